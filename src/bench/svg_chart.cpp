#include "bench/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace mixserve::bench {
namespace {

// Colour-blind-safe palette (Okabe & Ito).
const char* const kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                               "#E69F00", "#56B4E9", "#000000"};

struct Frame {
  double left = 90, right = 200, top = 70, bottom = 70;  // margins; the legend sits right
};

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1.0;
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  const double first = std::ceil(lo / step - 1e-9) * step;
  // Up to the first tick at or above hi, so the axis covers the data.
  for (int k = 0;; ++k) {
    const double t = first + step * k;  // by multiplication: no accumulated rounding
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi - step * 1e-9) break;
  }
  return ticks;
}

std::string format_number(double v) {
  char buf[32];
  if (v == std::floor(v) && std::abs(v) < 1e7) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", v);
  }
  return buf;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_svg(const Chart& c) {
  const Frame f;
  const double W = c.width, H = c.height;
  const double pw = W - f.left - f.right, ph = H - f.top - f.bottom;  // plot area

  // Data ranges. y starts at 0 (throughput and latency are both >= 0); x too unless log2.
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymax = 0.0;
  for (const ChartSeries& s : c.series)
    for (const ChartPoint& p : s.points) {
      xmin = std::min(xmin, p.x);
      xmax = std::max(xmax, p.x);
      ymax = std::max(ymax, p.y);
    }
  if (c.x_budget) {
    xmin = std::min(xmin, *c.x_budget);
    xmax = std::max(xmax, *c.x_budget);
  }
  const bool empty = !std::isfinite(xmin);
  if (empty) xmin = 0, xmax = 1;
  std::vector<double> xticks;
  double x0, x1;
  if (c.x_log2) {
    xmin = std::max(xmin, 1e-9);
    const int e0 = int(std::floor(std::log2(xmin))), e1 = int(std::ceil(std::log2(xmax)));
    for (int e = e0; e <= std::max(e1, e0 + 1); ++e) xticks.push_back(std::ldexp(1.0, e));
    x0 = std::log2(xticks.front());
    x1 = std::log2(xticks.back());
  } else {
    xticks = nice_ticks(0.0, xmax * 1.03, 6);
    x0 = 0.0;
    x1 = std::max(xticks.back(), xmax);
  }
  std::vector<double> yticks = nice_ticks(0.0, std::max(ymax * 1.05, 1e-9), 6);
  const double y1 = std::max(yticks.back(), ymax);
  auto px = [&](double v) {
    const double t = c.x_log2 ? std::log2(std::max(v, 1e-9)) : v;
    return f.left + (t - x0) / (x1 - x0) * pw;
  };
  auto py = [&](double v) { return f.top + ph - v / y1 * ph; };

  std::ostringstream o;
  o.precision(6);
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" viewBox=\"0 0 " << W << " " << H << "\" font-family=\"Helvetica, Arial, sans-serif\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << f.left << "\" y=\"30\" font-size=\"20\" font-weight=\"bold\">"
    << xml_escape(c.title) << "</text>\n";
  if (!c.subtitle.empty())
    o << "<text x=\"" << f.left << "\" y=\"52\" font-size=\"12\" fill=\"#555\">"
      << xml_escape(c.subtitle) << "</text>\n";

  // Grid and ticks.
  for (double t : yticks) {
    o << "<line x1=\"" << f.left << "\" y1=\"" << py(t) << "\" x2=\"" << f.left + pw << "\" y2=\""
      << py(t) << "\" stroke=\"#e5e5e5\"/>\n";
    o << "<text x=\"" << f.left - 8 << "\" y=\"" << py(t) + 4
      << "\" font-size=\"12\" text-anchor=\"end\">" << format_number(t) << "</text>\n";
  }
  for (double t : xticks) {
    o << "<line x1=\"" << px(t) << "\" y1=\"" << f.top << "\" x2=\"" << px(t) << "\" y2=\""
      << f.top + ph << "\" stroke=\"#e5e5e5\"/>\n";
    o << "<text x=\"" << px(t) << "\" y=\"" << f.top + ph + 18
      << "\" font-size=\"12\" text-anchor=\"middle\">" << format_number(t) << "</text>\n";
  }
  o << "<rect x=\"" << f.left << "\" y=\"" << f.top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#333\"/>\n";
  o << "<text x=\"" << f.left + pw / 2 << "\" y=\"" << H - 22
    << "\" font-size=\"14\" text-anchor=\"middle\">" << xml_escape(c.x_label) << "</text>\n";
  o << "<text transform=\"translate(24," << f.top + ph / 2
    << ") rotate(-90)\" font-size=\"14\" text-anchor=\"middle\">" << xml_escape(c.y_label)
    << "</text>\n";
  if (empty)
    o << "<text x=\"" << f.left + pw / 2 << "\" y=\"" << f.top + ph / 2
      << "\" font-size=\"16\" text-anchor=\"middle\" fill=\"#999\">no data</text>\n";

  if (c.x_budget) {
    const double bx = px(*c.x_budget);
    o << "<line x1=\"" << bx << "\" y1=\"" << f.top << "\" x2=\"" << bx << "\" y2=\""
      << f.top + ph << "\" stroke=\"#C00\" stroke-dasharray=\"6,4\" stroke-width=\"1.5\"/>\n";
    o << "<text x=\"" << bx + 4 << "\" y=\"" << f.top + ph - 8 << "\" font-size=\"12\" fill=\"#C00\">"
      << xml_escape(c.x_budget_label) << "</text>\n";
  }

  // Series: polyline, dots, point labels; legend on the right.
  for (size_t i = 0; i < c.series.size(); ++i) {
    const ChartSeries& s = c.series[i];
    const char* color = kColors[i % (sizeof kColors / sizeof kColors[0])];
    if (s.points.size() > 1) {
      o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\""
        << (s.dashed ? " stroke-dasharray=\"7,4\"" : "") << " points=\"";
      for (const ChartPoint& p : s.points) o << px(p.x) << "," << py(p.y) << " ";
      o << "\"/>\n";
    }
    for (const ChartPoint& p : s.points) {
      o << "<circle cx=\"" << px(p.x) << "\" cy=\"" << py(p.y) << "\" r=\"4\" fill=\"" << color
        << "\"><title>" << xml_escape(s.name + " " + p.label + ": x=" + format_number(p.x) +
                                      ", y=" + format_number(p.y))
        << "</title></circle>\n";
      if (!p.label.empty() && i == 0)
        o << "<text x=\"" << px(p.x) + 6 << "\" y=\"" << py(p.y) - 7
          << "\" font-size=\"10\" fill=\"#444\">" << xml_escape(p.label) << "</text>\n";
    }
    const double ly = f.top + 10 + 22.0 * double(i);
    o << "<line x1=\"" << f.left + pw + 15 << "\" y1=\"" << ly << "\" x2=\"" << f.left + pw + 40
      << "\" y2=\"" << ly << "\" stroke=\"" << color << "\" stroke-width=\"2\""
      << (s.dashed ? " stroke-dasharray=\"7,4\"" : "") << "/>\n";
    o << "<text x=\"" << f.left + pw + 46 << "\" y=\"" << ly + 4 << "\" font-size=\"12\">"
      << xml_escape(s.name) << "</text>\n";
  }

  if (c.marker) {
    const double mx = px(c.marker->x), my = py(c.marker->y);
    o << "<circle cx=\"" << mx << "\" cy=\"" << my
      << "\" r=\"10\" fill=\"none\" stroke=\"#C00\" stroke-width=\"2.5\"/>\n";
    o << "<text x=\"" << mx + 12 << "\" y=\"" << my + 18
      << "\" font-size=\"12\" font-weight=\"bold\" fill=\"#C00\">"
      << xml_escape(c.marker->label) << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace mixserve::bench
