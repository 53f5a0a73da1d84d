#include "engine/data/bpe.hpp"

#include <array>
#include <atomic>
#include <nlohmann/json.hpp>
#include <queue>

#include "engine/core/error.hpp"
#include "engine/data/byte_level.hpp"
#include "engine/data/utf8_codec.hpp"

namespace engine::data {

// Open-addressing table (left id, right id) -> (rank, merged id): the hot lookup of BPE. Key and value sit
// side by side so that a lookup touches one cache line.
struct BpeModel::PairTable {
  static constexpr uint64_t kEmpty = ~0ull;
  struct Entry {
    uint64_t key;
    uint64_t value;  // rank << 32 | merged id
  };
  std::vector<Entry> entries;
  uint64_t mask = 0;

  explicit PairTable(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 2) capacity <<= 1;
    entries.assign(capacity, Entry{kEmpty, 0});
    mask = capacity - 1;
  }
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 24) & mask; }
  // Inserts unless present (the first merge of a pair wins, as in HF).
  void insert(uint64_t k, uint64_t value) {
    for (size_t i = slot(k);; i = (i + 1) & mask) {
      if (entries[i].key == k) return;
      if (entries[i].key == kEmpty) {
        entries[i] = {k, value};
        return;
      }
    }
  }
  // Returns rank << 32 | merged, or kEmpty.
  uint64_t find(int32_t left, int32_t right) const {
    const uint64_t k = key(left, right);
    for (size_t i = slot(k);; i = (i + 1) & mask) {
      if (entries[i].key == k) return entries[i].value;
      if (entries[i].key == kEmpty) return kEmpty;
    }
  }
};

// A bounded, lock-free cache word -> ids. Open addressing over atomic pointers to immutable entries: a
// reader only loads (no lock, no shared write, so threads scale), an inserter claims an empty slot with one
// compare-exchange. Entries are never removed or replaced while the cache lives, so a pointer a reader holds
// stays valid; when the table is half full (or a probe runs long) it stops inserting, like HF's cache.
struct BpeModel::WordCache {
  static constexpr size_t kSlots = size_t{1} << 17;
  static constexpr size_t kMaxEntries = kSlots / 2;
  static constexpr size_t kMaxProbe = 16;
  static constexpr size_t kMaxWordBytes = 128;
  struct Entry {
    uint64_t hash;
    std::string word;
    std::vector<int32_t> ids;
  };
  std::unique_ptr<std::atomic<const Entry*>[]> slots { new std::atomic<const Entry*>[ kSlots ]() };
  std::atomic<size_t> count{0};

  ~WordCache() {
    for (size_t i = 0; i < kSlots; ++i) delete slots[i].load(std::memory_order_relaxed);
  }

  const Entry* find(std::string_view word, uint64_t hash) const {
    for (size_t k = 0, i = hash & (kSlots - 1); k < kMaxProbe; ++k, i = (i + 1) & (kSlots - 1)) {
      const Entry* e = slots[i].load(std::memory_order_acquire);
      if (e == nullptr) return nullptr;
      if (e->hash == hash && e->word == word) return e;
    }
    return nullptr;
  }

  void insert(std::string_view word, uint64_t hash, std::vector<int32_t> ids) {
    if (count.load(std::memory_order_relaxed) >= kMaxEntries) return;
    auto entry = std::make_unique<Entry>(Entry{hash, std::string(word), std::move(ids)});
    for (size_t k = 0, i = hash & (kSlots - 1); k < kMaxProbe; ++k, i = (i + 1) & (kSlots - 1)) {
      const Entry* expected = nullptr;
      if (slots[i].compare_exchange_strong(expected, entry.get(), std::memory_order_release,
                                           std::memory_order_acquire)) {
        entry.release();
        count.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (expected->hash == hash && expected->word == word) return;  // another thread was first
    }
  }
};

BpeModel::BpeModel() = default;
BpeModel::~BpeModel() = default;
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;

BpeModel BpeModel::from_json(const nlohmann::json& model, bool byte_level, const std::string& where) {
  const std::string type = model.value("type", "BPE");
  if (type != "BPE") {
    fail_with(ENG_ERR_UNSUPPORTED, "{}: tokenizer model type \"{}\" is not supported (supported: BPE)", where,
              type);
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() > 0) {
    fail_with(ENG_ERR_UNSUPPORTED, "{}: BPE dropout is not supported; set \"dropout\": null in the model",
              where);
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      fail_with(ENG_ERR_UNSUPPORTED, "{}: BPE option \"{}\" is not supported (only empty)", where, key);
    }
  }
  BpeModel result;
  result.byte_level_ = byte_level;
  result.ignore_merges_ = model.value("ignore_merges", false);
  result.byte_fallback_ = model.value("byte_fallback", false);
  result.fuse_unk_ = model.value("fuse_unk", false);
  const auto& vocab = model.at("vocab");
  result.vocab_.reserve(vocab.size());
  for (const auto& [token, id_json] : vocab.items()) {
    const int32_t id = read_token_id(id_json, "vocabulary token \"" + token + "\"", where);
    result.vocab_.emplace(token, id);
    if (static_cast<size_t>(id) >= result.tokens_.size()) result.tokens_.resize(static_cast<size_t>(id) + 1);
    result.tokens_[static_cast<size_t>(id)] = token;
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const auto it = result.vocab_.find(model["unk_token"].get<std::string>());
    if (it == result.vocab_.end()) fail("{}: unk_token is not in the vocabulary", where);
    result.unk_ = it->second;
  }
  const auto& merges = model.at("merges");
  result.merges_ = std::make_unique<PairTable>(merges.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) fail("{}: merge {} (\"{}\") is not \"left right\"", where, rank, s);
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else {
      left = m.at(0).get<std::string>();
      right = m.at(1).get<std::string>();
    }
    const auto l = result.vocab_.find(left), r = result.vocab_.find(right),
               merged = result.vocab_.find(left + right);
    if (l == result.vocab_.end() || r == result.vocab_.end() || merged == result.vocab_.end()) {
      fail("{}: merge {} (\"{}\" + \"{}\") uses or makes a token missing from the vocabulary", where, rank,
           left, right);
    }
    result.merges_->insert(PairTable::key(l->second, r->second),
                           (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(merged->second));
  }
  if (byte_level) {
    result.byte_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, byte_to_char(static_cast<uint8_t>(b)));
      if (const auto it = result.vocab_.find(ch); it != result.vocab_.end())
        result.byte_ids_[static_cast<size_t>(b)] = it->second;
    }
    if (result.ignore_merges_) {
      for (const auto& [token, id] : result.vocab_) {
        if (auto raw = alphabet_to_bytes(token)) result.raw_vocab_.emplace(std::move(*raw), id);
      }
    }
  }
  result.cache_ = std::make_unique<WordCache>();
  return result;
}

int32_t read_token_id(const nlohmann::json& id, const std::string& what, const std::string& where) {
  if (!id.is_number_integer()) fail("{}: the id of {} is {}, not an integer", where, what, id.dump());
  const bool negative = id.is_number_integer() && !id.is_number_unsigned() && id.get<int64_t>() < 0;
  if (negative || id.get<uint64_t>() > static_cast<uint64_t>(kMaxTokenId)) {
    fail("{}: the id of {} is {}; token ids must be in 0..{} (fix or remove that entry)", where, what,
         id.dump(), kMaxTokenId);
  }
  return static_cast<int32_t>(id.get<int64_t>());
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string kNone;
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) return kNone;
  return tokens_[static_cast<size_t>(id)];
}

void BpeModel::merge(std::vector<int32_t>& symbols) const {
  constexpr uint32_t kNoRank = ~0u;
  const size_t n = symbols.size();
  if (n < 2) return;
  const auto rank_of = [&](int32_t l, int32_t r, int32_t& merged) {
    const uint64_t v = merges_->find(l, r);
    if (v == PairTable::kEmpty) return kNoRank;
    merged = static_cast<int32_t>(v & 0xFFFFFFFFu);
    return static_cast<uint32_t>(v >> 32);
  };
  if (n <= 64) {
    // Short words: rescan the pair ranks; merge the lowest (leftmost on ties) until none applies.
    std::array<uint32_t, 64> ranks;
    std::array<int32_t, 64> merged_ids;
    size_t len = n;
    for (size_t i = 0; i + 1 < len; ++i) ranks[i] = rank_of(symbols[i], symbols[i + 1], merged_ids[i]);
    while (len > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < len; ++i) {
        if (ranks[i] < ranks[best]) best = i;
      }
      if (ranks[best] == kNoRank) break;
      symbols[best] = merged_ids[best];
      for (size_t i = best + 1; i + 1 < len; ++i) symbols[i] = symbols[i + 1];
      for (size_t i = best + 1; i + 2 < len; ++i) {
        ranks[i] = ranks[i + 1];
        merged_ids[i] = merged_ids[i + 1];
      }
      --len;
      if (best > 0) ranks[best - 1] = rank_of(symbols[best - 1], symbols[best], merged_ids[best - 1]);
      if (best + 1 < len) ranks[best] = rank_of(symbols[best], symbols[best + 1], merged_ids[best]);
    }
    symbols.resize(len);
    return;
  }
  // Long words: a heap of candidate merges over a linked list of symbols (HF's algorithm).
  struct Candidate {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push = [&](int32_t pos) {
    if (pos < 0 || next[static_cast<size_t>(pos)] < 0) return;
    int32_t merged = 0;
    const uint32_t rank = rank_of(symbols[static_cast<size_t>(pos)],
                                  symbols[static_cast<size_t>(next[static_cast<size_t>(pos)])], merged);
    if (rank != kNoRank) heap.push({rank, static_cast<uint32_t>(pos), merged});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const size_t pos = c.pos;
    if (!alive[pos] || next[pos] < 0) continue;
    const auto right = static_cast<size_t>(next[pos]);
    int32_t merged = 0;
    if (rank_of(symbols[pos], symbols[right], merged) != c.rank || merged != c.merged) continue;  // stale
    symbols[pos] = merged;
    alive[right] = false;
    next[pos] = next[right];
    if (next[right] >= 0) prev[static_cast<size_t>(next[right])] = static_cast<int32_t>(pos);
    push(prev[pos]);
    push(static_cast<int32_t>(pos));
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)])
    symbols[out++] = symbols[static_cast<size_t>(i)];
  symbols.resize(out);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (byte_level_) {
      if (const auto it = raw_vocab_.find(std::string(word)); it != raw_vocab_.end()) {
        out.push_back(it->second);
        return;
      }
    } else if (const auto it = vocab_.find(std::string(word)); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= WordCache::kMaxWordBytes;
  const uint64_t hash = std::hash<std::string_view>{}(word);
  if (cacheable) {
    if (const auto* hit = cache_->find(word, hash)) {
      out.insert(out.end(), hit->ids.begin(), hit->ids.end());
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  if (byte_level_) {
    for (char c : word) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        symbols.push_back(id);
      } else if (unk_ && !(fuse_unk_ && !symbols.empty() && symbols.back() == *unk_)) {
        symbols.push_back(*unk_);
      }
    }
  } else {
    size_t pos = 0;
    std::string ch;
    while (pos < word.size()) {
      size_t length = 0;
      decode_utf8(word, pos, length);
      ch.assign(word.substr(pos, length));
      pos += length;
      if (const auto it = vocab_.find(ch); it != vocab_.end()) {
        symbols.push_back(it->second);
        continue;
      }
      bool all_bytes = byte_fallback_;
      std::vector<int32_t> bytes;
      for (size_t k = 0; all_bytes && k < ch.size(); ++k) {
        const auto it = vocab_.find(fmt::format("<0x{:02X}>", static_cast<uint8_t>(ch[k])));
        if (it == vocab_.end()) {
          all_bytes = false;
        } else {
          bytes.push_back(it->second);
        }
      }
      if (all_bytes) {
        symbols.insert(symbols.end(), bytes.begin(), bytes.end());
      } else if (unk_ && !(fuse_unk_ && !symbols.empty() && symbols.back() == *unk_)) {
        symbols.push_back(*unk_);
      }
    }
  }
  merge(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (cacheable) cache_->insert(word, hash, std::move(symbols));
}

}  // namespace engine::data
