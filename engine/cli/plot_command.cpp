// engine plot OUTPUT_DIR --out FILE.svg
// Draws metrics.jsonl's training loss (and evaluation loss, when logged) over steps, with the learning rate
// on a second axis, as a standalone SVG any browser shows.
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/cli/command.hpp"
#include "engine/cli/option_args.hpp"
#include "engine/core/error.hpp"

namespace engine::cli {

namespace {

struct Series {
  std::vector<double> x, y;
};

std::string polyline(const Series& s, double x0, double x1, double y0, double y1, const char* color) {
  const double W = 720, H = 360, L = 60, T = 20;
  std::string pts;
  for (size_t i = 0; i < s.x.size(); ++i) {
    const double px = L + (x1 > x0 ? (s.x[i] - x0) / (x1 - x0) : 0.5) * W;
    const double py = T + H - (y1 > y0 ? (s.y[i] - y0) / (y1 - y0) : 0.5) * H;
    pts += fmt::format("{:.1f},{:.1f} ", px, py);
  }
  return fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n", color,
                     pts);
}

}  // namespace

int plot_command(const std::vector<std::string>& args) {
  std::vector<std::string> rest;
  std::string dir;
  for (const auto& a : args) {
    if (dir.empty() && !a.empty() && a[0] != '-')
      dir = a;
    else
      rest.push_back(a);
  }
  if (dir.empty()) throw UsageError("missing OUTPUT_DIR (the run's train.output_dir)");
  OptionArgs o = parse_option_args(rest, {"--out"}, {});
  const std::string out = o.require("--out");
  std::ifstream in(std::filesystem::path(dir) / "metrics.jsonl");
  if (!in) fail("no metrics.jsonl in {}", dir);
  Series loss, eval, lr;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step")) continue;
    const double step = j["step"].get<double>();
    if (j.contains("loss") && j["loss"].is_number())
      loss.x.push_back(step), loss.y.push_back(j["loss"].get<double>());
    if (j.contains("lr") && j["lr"].is_number()) lr.x.push_back(step), lr.y.push_back(j["lr"].get<double>());
    if (j.contains("eval_loss") && j["eval_loss"].is_number())
      eval.x.push_back(step), eval.y.push_back(j["eval_loss"].get<double>());
  }
  if (loss.x.empty()) fail("{}/metrics.jsonl has no loss values to plot", dir);
  const double x0 = loss.x.front(), x1 = std::max(loss.x.back(), eval.x.empty() ? 0.0 : eval.x.back());
  double y0 = 0.0, y1 = 0.0;
  for (double v : loss.y) y1 = std::max(y1, v);
  for (double v : eval.y) y1 = std::max(y1, v);
  double lr1 = 0.0;
  for (double v : lr.y) lr1 = std::max(lr1, v);
  std::ofstream f(out);
  if (!f) fail("cannot write {}", out);
  f << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"840\" height=\"420\" font-family=\"sans-serif\" "
       "font-size=\"12\">\n"
    << "<rect x=\"60\" y=\"20\" width=\"720\" height=\"360\" fill=\"none\" stroke=\"#888\"/>\n"
    << polyline(loss, x0, x1, y0, y1, "#1f77b4")
    << (eval.x.empty() ? "" : polyline(eval, x0, x1, y0, y1, "#2ca02c"))
    << (lr.x.empty() ? "" : polyline(lr, x0, x1, 0.0, lr1, "#ff7f0e"))
    << fmt::format("<text x=\"60\" y=\"400\">step {:.0f}</text><text x=\"740\" y=\"400\">{:.0f}</text>\n", x0,
                   x1)
    << fmt::format("<text x=\"4\" y=\"24\">{:.3g}</text><text x=\"4\" y=\"380\">0</text>\n", y1)
    // right-aligned to the image's edge: left-aligned at 790 it ran past the 840-pixel width ("lr 0.0099")
    << fmt::format("<text x=\"836\" y=\"24\" text-anchor=\"end\" fill=\"#ff7f0e\">lr {:.2g}</text>\n", lr1)
    << "<text x=\"300\" y=\"14\"><tspan fill=\"#1f77b4\">train loss</tspan> <tspan fill=\"#2ca02c\">eval "
       "loss</tspan> "
       "<tspan fill=\"#ff7f0e\">learning rate</tspan></text>\n</svg>\n";
  std::cout << "wrote " << out << " (" << loss.x.size() << " logged steps)\n";
  return kExitOk;
}

}  // namespace engine::cli
