#include "engine/train/checkpoint_io.hpp"

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <utility>
#include <vector>

#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"
#include "engine/io/checkpoint_manifest.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/io/safetensors_writer.hpp"
#include "engine/runtime/state_dict.hpp"
#include "engine/session/checkpoint_reader.hpp"
#include "engine/session/trainable_coverage.hpp"
#include "engine/train/checkpoint_dir.hpp"

namespace engine::train {

namespace fs = std::filesystem;

namespace {

std::string shard_name(int rank, int world) {
  return fmt::format("optimizer-rank{:05d}-of-{:05d}.safetensors", rank, world);
}

// The layout of a zero3/fsdp/tp optimizer share, kept in its "__metadata__" under kShardLayoutKey:
//   {"rank": r, "world": W, "shards": {"<param>": S or [begin, end] or {"dim": d, "parts": P, "index": i}, ...}}
// An entry "<param>.<field>" of a float dtype with exactly that many elements is rank r's slice of the
// field: the flat [r*S, (r+1)*S) for a number S (zero3: zero past the parameter's end), the flat [begin, end)
// for a pair (fsdp: the part of the parameter in rank r's shard of its block's flat buffer, possibly empty),
// slice i of P equal slices along dimension d of the parameter's shape for an object (tp). Anything else (a
// step count) is the same on every rank.
constexpr char kShardLayoutKey[] = "engine.shard_layout";

std::string shard_layout(session::TrainingSession& session) {
  const rt::ParamStore& store = session.host().params();
  nlohmann::json shards = nlohmann::json::object();
  for (rt::Param* p : session.trainable()) {
    if (p->split()) {  // tp: slice `index` of `parts` along `dim`
      shards[p->name()] = nlohmann::json{{"dim", p->root->placement.split.dim},
                                         {"parts", session.model_parallel_size()},
                                         {"index", session.host().model_communicator().rank()}};
      continue;
    }
    if (!p->sharded()) continue;
    if (p->root->placement.flat->members.size() == 1) {
      shards[p->name()] = p->root->placement.flat->shard;
    } else {
      const auto [begin, end] = store.local_range(*p);
      shards[p->name()] = nlohmann::json::array({begin, end});
    }
  }
  return nlohmann::json{{"rank", session.rank()}, {"world", session.world_size()}, {"shards", shards}}.dump();
}

// The elements [first, first + count) of the flattened parameter that a share's slice entry holds, from the
// share's layout value (a number S: rank r's [r*S, (r+1)*S); a pair: [begin, end)).
std::pair<int64_t, int64_t> slice_of(const nlohmann::json& entry, int64_t rank, const rt::Param* p) {
  if (entry.is_object()) {  // tp: slice i of P along dim d; its size here, where it goes in assemble_split
    const int64_t parts = entry.at("parts").get<int64_t>();
    if (p == nullptr || parts < 1 || p->shape().numel() % parts != 0)
      fail("a shard layout entry {} does not fit the parameter", entry.dump());
    return {-1, p->shape().numel() / parts};
  }
  if (entry.is_array()) {
    const int64_t begin = entry.at(0).get<int64_t>(), end = entry.at(1).get<int64_t>();
    if (begin < 0 || end < begin) fail("a shard layout entry [{}, {}) is not a range", begin, end);
    return {begin, end - begin};
  }
  const int64_t shard = entry.get<int64_t>();
  return {rank * shard, shard};
}

// The parameter name of an optimizer entry "<param>.<field>" (fields have no dot).
std::string param_of_key(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(0, dot);
}

// whole: the file holds the state of every trainable parameter (checked here); a sharded optimizer's share
// (zero2) holds this rank's parameters only, and the shares together are checked when they are read back.
void write_optimizer_state(session::TrainingSession& session, const fs::path& file, bool whole = true) {
  rt::StateDict state;
  session.optimizer().save_state(state);
  if (whole)
    session::check_optimizer_state_covers(
        session.trainable_names(), state.keys(),
        "the state the " + session.optimizer().name() + " optimizer saves into " + file.string());
  io::SafetensorsWriter w;
  if (!whole && session.places_params()) w.set_metadata(kShardLayoutKey, shard_layout(session));
  for (const auto& [key, t] : state.entries()) {
    rt::Tensor c = t.contiguous();
    std::vector<std::byte> bytes(c.nbytes());
    c.copy_to_host(bytes.data(), bytes.size());
    w.add(key, c.dtype(), c.shape().vec(), bytes);
  }
  w.set_metadata("format", "pt");
  w.write(file);
}

void require_optimizer_state(const fs::path& file, bool allow_missing) {
  bool shares = false;  // a sharded optimizer (zero2) saves optimizer-rank<R>-of-<W>.safetensors instead
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(file.parent_path(), ec))
    shares = shares || e.path().filename().string().rfind("optimizer-rank", 0) == 0;
  if (ec) fail_with(ENG_ERR_IO, "cannot resume from {}: cannot list it: {}", file.parent_path().string(), ec.message());
  if (!fs::exists(file, ec) && !shares && !allow_missing) {
    fail_with(ENG_ERR_IO,
              "cannot resume from {}: {} is missing, so the optimizer would start from a fresh state (not the "
              "run that was saved). Restore the file, resume from another checkpoint (--resume DIR), or pass "
              "--allow-missing-optimizer-state to continue with a fresh optimizer state",
              file.parent_path().string(), file.filename().string());
  }
}

// Reads optimizer.safetensors, or every optimizer-rank*.safetensors share of a sharded optimizer merged.
void read_optimizer_state(session::TrainingSession& session, const fs::path& file) {
  rt::StateDict state;
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::exists(file, ec)) files.push_back(file);
  for (const auto& e : fs::directory_iterator(file.parent_path(), ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("optimizer-rank", 0) == 0 && n.ends_with(".safetensors")) files.push_back(e.path());
  }
  if (ec) fail_with(ENG_ERR_IO, "cannot read the optimizer state in {}: {}", file.parent_path().string(), ec.message());
  std::sort(files.begin(), files.end());
  rt::ParamStore& store = session.host().params();
  rt::Device& device = session.host().device();
  // zero3 shares: each field is assembled whole (the parameter's shape) from every rank's flat slice.
  struct Assembled {
    rt::Tensor whole;  // flat, the parameter's numel
    int64_t filled = 0;
    rt::Param* param = nullptr;
    std::set<int64_t> parts;  // tp: the slices read (every data-parallel replica of a mesh writes the same ones)
  };
  std::map<std::string, Assembled> assembled;
  int layout_world = 0, layout_files = 0;
  for (const fs::path& one : files) {
    io::SafetensorsFile f = io::SafetensorsFile::open(one);
    nlohmann::json layout;
    if (auto it = f.metadata().find(kShardLayoutKey); it != f.metadata().end()) {
      layout = nlohmann::json::parse(it->second);
      layout_world = layout.at("world").get<int>();
      ++layout_files;
    }
    for (const io::SafetensorsTensor& t : f.tensors()) {
      if (!t.engine_dtype)
        fail("{}: tensor {} has dtype {} the engine does not use", file.string(), t.name, t.dtype_name);
      rt::Tensor dst = rt::Tensor::empty(rt::Dims::from(t.shape.data(), static_cast<int>(t.shape.size())),
                                         *t.engine_dtype, device);
      session::read_tensor_into(t, dst, one.string());
      const std::string key(t.name);
      const std::string pname = param_of_key(key);
      std::pair<int64_t, int64_t> slice{0, -1};
      nlohmann::json entry;
      if (!layout.is_null() && layout["shards"].contains(pname)) {
        entry = layout["shards"][pname];
        slice = slice_of(entry, layout.at("rank").get<int64_t>(), store.find(pname));
      }
      const bool sliced = rt::dtype_is_float(dst.dtype()) && dst.numel() == slice.second;
      if (!sliced) {
        if (!state.contains(key)) state.put(key, dst);
        continue;
      }
      rt::Param* p = store.find(pname);
      if (p == nullptr)
        fail("{}: optimizer entry {} belongs to no parameter of this run ('{}')", one.string(), key, pname);
      const int64_t n = p->shape().numel(), first = slice.first;
      Assembled& a = assembled[key];
      if (!a.whole.defined()) {
        a.whole = rt::Tensor::zeros(rt::Dims{n}, dst.dtype(), device);
        a.param = p;
      }
      if (entry.is_object()) {  // tp: slice `index` of `parts` along `dim` of the parameter's shape
        const int dim = entry.at("dim").get<int>();
        const int64_t parts = entry.at("parts").get<int64_t>(), index = entry.at("index").get<int64_t>();
        const rt::Dims& full = p->shape();
        if ((dim != 0 && dim != 1) || dim >= full.ndim || full[dim] % parts != 0 || index < 0 || index >= parts)
          fail("{}: the shard layout entry {} of {} does not fit its shape {}", one.string(), entry.dump(), pname,
               full.str());
        const int64_t w = full[dim] / parts;
        if (!a.parts.insert(index).second) continue;  // the same slice from another replica
        rt::Tensor target = a.whole.view(full).sliced(dim, index * w, (index + 1) * w);
        target.copy_from(dst.view(target.shape()));
        a.filled += dst.numel();
        continue;
      }
      const int64_t end = std::min(n, first + slice.second);
      if (end > first) {
        a.whole.sliced(0, first, end).copy_from(dst.view(rt::Dims{slice.second}).sliced(0, 0, end - first));
        a.filled += end - first;
      }
    }
  }
  if (layout_files > 0 && layout_files != layout_world)
    fail("the optimizer state next to {} was written by {} ranks but {} of their shares are there; restore the "
         "missing optimizer-rank*-of-{:05d}.safetensors files",
         file.string(), layout_world, layout_files, layout_world);
  for (auto& [key, a] : assembled) {
    if (a.filled != a.whole.numel())
      fail("optimizer entry {}: the shares hold {} of its {} elements (a share is missing)", key, a.filled,
           a.whole.numel());
    state.put(key, a.whole.view(a.param->shape()));
  }
  // This run's placement: a split parameter's optimizer steps its slice (tp), a sharded one's its local flat
  // slice (zero3, fsdp).
  if (session.splits_params()) {
    for (const std::string& key : state.keys()) {
      rt::Param* p = store.find(param_of_key(key));
      rt::Tensor t = state.get(key);
      if (p == nullptr || !p->split() || !rt::dtype_is_float(t.dtype()) || t.numel() != p->shape().numel())
        continue;
      const int dim = p->root->placement.split.dim;
      const int parts = session.model_parallel_size(), index = session.host().model_communicator().rank();
      const int64_t w = p->shape()[dim] / parts;
      state.put(key, t.contiguous().view(p->shape()).sliced(dim, w * index, w * (index + 1)).contiguous().clone());
    }
  }
  if (session.shards_params()) {
    for (const std::string& key : state.keys()) {
      rt::Param* p = store.find(param_of_key(key));
      rt::Tensor t = state.get(key);
      if (p == nullptr || !p->sharded() || !rt::dtype_is_float(t.dtype()) || t.numel() != p->shape().numel())
        continue;
      const auto [first, last] = store.local_range(*p);
      const int64_t end = std::min(t.numel(), last);
      rt::Tensor local = rt::Tensor::zeros(rt::Dims{last - first}, t.dtype(), device);
      if (end > first) local.sliced(0, 0, end - first).copy_from(t.contiguous().view(rt::Dims{t.numel()}).sliced(0, first, end));
      state.put(key, local);
    }
  }
  session::check_optimizer_state_covers(session.trainable_names(), state.keys(),
                                        "the optimizer state " + file.string());
  session.optimizer().load_state(state);
}

}  // namespace

void write_optimizer_shard(session::TrainingSession& session, const fs::path& folder) {
  fs::create_directories(folder);
  write_optimizer_state(session, folder / shard_name(session.rank(), session.world_size()), false);
}

fs::path save_checkpoint(session::TrainingSession& session, const TrainerState& state,
                         const fs::path& optimizer_shards, int world) {
  const recipe::Recipe& r = session.recipe();
  if (!optimizer_shards.empty()) {
    for (int rank = 0; rank < world; ++rank)
      if (!fs::exists(optimizer_shards / shard_name(rank, world)))
        fail("checkpoint at step {}: the optimizer share of rank {} is missing from {}; not publishing a checkpoint "
             "that would lose optimizer state",
             state.step, rank, optimizer_shards.string());
  }
  const fs::path published = publish_checkpoint(r.train.output_dir, state.step, r.checkpoint.keep_last, [&](const fs::path& dir) {
    checkpoint_fault_point("weights");
    session.save_weights(dir);
    checkpoint_fault_point("optimizer");
    if (optimizer_shards.empty()) {
      write_optimizer_state(session, dir / "optimizer.safetensors");
    } else {
      for (int rank = 0; rank < world; ++rank)
        fs::rename(optimizer_shards / shard_name(rank, world), dir / shard_name(rank, world));
    }
    checkpoint_fault_point("recipe");
    if (fs::exists(r.source))
      fs::copy_file(r.source, dir / "recipe.toml", fs::copy_options::overwrite_existing);
    {
      std::ofstream f(dir / "recipe.json");
      f << r.resolved.dump(2) << '\n';
      if (!f.flush()) fail_with(ENG_ERR_IO, "cannot write {}", (dir / "recipe.json").string());
    }
    checkpoint_fault_point("trainer_state");
    state.write(dir / "trainer_state.json");  // its presence marks a complete checkpoint
    checkpoint_fault_point("manifest");
    io::write_checkpoint_manifest(dir);  // last: the checksums of everything above
  });
  if (!optimizer_shards.empty()) fs::remove_all(optimizer_shards);
  return published;
}

TrainerState load_checkpoint(session::TrainingSession& session, const fs::path& dir,
                             bool allow_missing_optimizer_state) {
  io::ManifestCheck check;
  if (allow_missing_optimizer_state) check.may_be_missing.insert("optimizer.safetensors");
  require_optimizer_state(dir / "optimizer.safetensors", allow_missing_optimizer_state);
  io::verify_checkpoint_manifest(dir, check);
  TrainerState state = TrainerState::read(dir / "trainer_state.json");
  const bool full = session.full_finetune();
  if (!state.weights.empty() && state.weights != (full ? "full" : "adapter")) {
    fail("checkpoint {} holds {} weights but this recipe {}; resume with the recipe that wrote it",
         dir.string(), state.weights, full ? "fine-tunes the full model" : "trains an adapter");
  }
  session.load_weights(dir);
  read_optimizer_state(session, dir / "optimizer.safetensors");
  return state;
}

}  // namespace engine::train
