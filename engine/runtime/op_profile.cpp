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
      host_ ? fmt::format("host phase profile over {} steps (ENGINE_PROFILE_OPS=host; nothing synchronized): "
                          "{:.1f} ms per step of wall time, {:.1f} ms in the rows below\n",
                          steps, 1e3 * wall / n, 1e3 * total / n)
            : fmt::format("op profile over {} steps (ENGINE_PROFILE_OPS; synchronized, so slower than a "
                          "normal step): {:.1f} ms per step in the rows below\n",
                          steps, 1e3 * total / n);
  out += fmt::format("  {:<28} {:>12} {:>10} {:>7}\n", "op / phase", "ms per step", "calls", "share");
  for (const auto& [key, c] : rows)
    out += fmt::format("  {:<28} {:>12.2f} {:>10.0f} {:>6.1f}%\n", key.first + " / " + key.second,
                       1e3 * c.seconds / n, double(c.calls) / n, total > 0 ? 100.0 * c.seconds / total : 0.0);
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
  if (device == nullptr || !OpProfile::instance().enabled()) return;
  device_ = device;
  device_->synchronize();
  t0_ = now_s();
}

OpTimer::~OpTimer() {
  if (device_ == nullptr) return;
  device_->synchronize();
  OpProfile::instance().add(name_, phase_, now_s() - t0_);
}

}  // namespace engine::rt
