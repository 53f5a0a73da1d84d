#include "engine/runtime/op_profile.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/runtime/device.hpp"

namespace engine::rt {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

OpProfile& OpProfile::instance() {
  static OpProfile p;
  return p;
}

OpProfile::OpProfile() {
  const char* v = std::getenv("ENGINE_PROFILE_OPS");
  host_ = v != nullptr && std::strcmp(v, "host") == 0;
  enabled_ = !host_ && v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  const char* m = std::getenv("ENGINE_PROFILE_MEMORY");
  memory_ = m != nullptr && *m != '\0' && std::strcmp(m, "0") != 0;
}

void OpProfile::add_peak(const std::string& name, const char* phase, int64_t before, int64_t after) {
  std::lock_guard<std::mutex> lock(mu_);
  PeakCell& c = peaks_[{name, phase}];
  c.highest = std::max(c.highest, after);
  c.raised += after - before;
  ++c.times;
}

void OpProfile::add(const std::string& name, const char* phase, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  Cell& c = cells_[{name, phase}];
  c.seconds += seconds;
  ++c.calls;
}

void OpProfile::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  cells_.clear();
  peaks_.clear();
}

std::string OpProfile::report(int64_t steps) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::pair<std::string, std::string>, Cell>> rows(cells_.begin(), cells_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0, wall = 0;
  for (const auto& r : rows) (r.first.second == std::string("wall") ? wall : total) += r.second.seconds;
  std::erase_if(rows, [](const auto& r) { return r.first.second == std::string("wall"); });
  const double n = static_cast<double>(std::max<int64_t>(steps, 1));
  std::string out =
      !enabled_ && !host_ ? std::string()
      : host_ ? fmt::format("host phase profile over {} steps (ENGINE_PROFILE_OPS=host; nothing synchronized): "
                          "{:.1f} ms per step of wall time, {:.1f} ms in the rows below\n",
                          steps, 1e3 * wall / n, 1e3 * total / n)
            : fmt::format("op profile over {} steps (ENGINE_PROFILE_OPS; synchronized, so slower than a "
                          "normal step): {:.1f} ms per step in the rows below\n",
                          steps, 1e3 * total / n);
  if (!rows.empty() || !memory_) {
    out += fmt::format("  {:<28} {:>12} {:>10} {:>7}\n", "op / phase", "ms per step", "calls", "share");
    for (const auto& [key, c] : rows)
      out += fmt::format("  {:<28} {:>12.2f} {:>10.0f} {:>6.1f}%\n", key.first + " / " + key.second,
                         1e3 * c.seconds / n, double(c.calls) / n, total > 0 ? 100.0 * c.seconds / total : 0.0);
  }
  if (memory_) {
    // The ops in the order of the highest allocator peak they reached: the first is where the steps peak.
    std::vector<std::pair<std::pair<std::string, std::string>, PeakCell>> prow(peaks_.begin(), peaks_.end());
    std::sort(prow.begin(), prow.end(), [](const auto& a, const auto& b) { return a.second.highest > b.second.highest; });
    const auto mib = [](int64_t b) { return static_cast<double>(b) / double(1 << 20); };
    out += fmt::format("memory profile over {} steps (ENGINE_PROFILE_MEMORY; the allocator's peak, reset at each step's "
                       "start): the ops that raised it, by the highest peak they reached\n",
                       steps);
    out += fmt::format("  {:<28} {:>14} {:>16} {:>10}\n", "op / phase", "peak MiB", "raised MiB/step", "times/step");
    for (size_t i = 0; i < prow.size() && i < 24; ++i) {
      const auto& [key, c] = prow[i];
      out += fmt::format("  {:<28} {:>14.1f} {:>16.1f} {:>10.1f}\n", key.first + " / " + key.second, mib(c.highest),
                         mib(c.raised) / n, double(c.times) / n);
    }
  }
  return out;
}

HostTimer::HostTimer(const char* name, const char* phase) : name_(name), phase_(phase) {
  if (!OpProfile::instance().host_phases()) return;
  on_ = true;
  t0_ = now_s();
}

HostTimer::~HostTimer() {
  if (on_) OpProfile::instance().add(name_, phase_, now_s() - t0_);
}

OpTimer::OpTimer(Device* device, const char* name, const char* phase) : name_(name), phase_(phase) {
  const OpProfile& p = OpProfile::instance();
  if (device == nullptr || !(p.enabled() || p.memory())) return;
  device_ = device;
  if (p.memory()) peak0_ = device_->memory_stats().peak_bytes;
  if (!p.enabled()) return;
  device_->synchronize();
  t0_ = now_s();
}

OpTimer::~OpTimer() {
  if (device_ == nullptr) return;
  OpProfile& p = OpProfile::instance();
  if (p.memory()) {
    const int64_t peak = device_->memory_stats().peak_bytes;
    if (peak > peak0_) p.add_peak(name_, phase_, peak0_, peak);
  }
  if (!p.enabled()) return;
  device_->synchronize();
  p.add(name_, phase_, now_s() - t0_);
}

}  // namespace engine::rt
