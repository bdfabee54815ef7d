// Line charts as hand-written SVG (no dependency): axes with rounded ticks, several series of
// labelled points, an optional highlighted point and an optional vertical budget line. The
// output opens in any browser.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mixserve::bench {

struct ChartPoint {
  double x = 0.0, y = 0.0;
  std::string label;  // drawn beside the point when not empty
};

struct ChartSeries {
  std::string name;
  std::vector<ChartPoint> points;  // drawn joined in the given order
  bool dashed = false;
};

struct Chart {
  std::string title;
  std::string subtitle;           // workload, device, commit
  std::string x_label, y_label;
  bool x_log2 = false;            // batch sizes: ticks at the powers of two
  std::vector<ChartSeries> series;
  std::optional<ChartPoint> marker;     // the sweet spot: ringed, with its label
  std::optional<double> x_budget;       // a vertical dashed line at this x
  std::string x_budget_label;
  int width = 900, height = 600;
};

std::string render_svg(const Chart& chart);

// About `target` round tick values (1, 2, 2.5 or 5 times a power of ten) from the first at or
// above lo to the first at or above hi.
std::vector<double> nice_ticks(double lo, double hi, int target);
// "1234", "12.5", "0.125", "1.5e+06": short and exact enough for a tick or a label.
std::string format_number(double v);
std::string xml_escape(const std::string& s);

}  // namespace mixserve::bench
