// Dataset sources of a run: data.train / data.eval name one file or a list of them, each optionally with a
// sample count, and the run reads them as one dataset.
//   "data/a.jsonl"                       a JSON array, JSONL or CSV file (CSV: a header row; each row becomes a
//                                        record whose fields are the columns, as strings)
//   "data/a.jsonl#500"                   500 samples of it, drawn as ms-swift's `dataset#N` does: N below the
//                                        size: N distinct records in a seeded random order; above it: every
//                                        record floor(N / size) times plus a seeded random rest
//   {source = "...", count = 500}        the same
//   {source = "...", weight = 0.5}       round(weight * size) samples by the same rule (2.0 doubles a source)
// The seed is train.seed. A mixture (or a count) is written once to <cache_dir>/mixture-<key>.jsonl, whose
// records then go through the readers of dataset.hpp as any JSONL file does (its error messages name the
// mixture file's lines and, in `where`, each record's source). Parquet files are refused with how to convert.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace engine::data {

struct DataSource {
  std::filesystem::path path;  // a local file (Hub ids are resolved to one before, engine/cli/hub_sources)
  int64_t count = -1;          // samples to take; -1: all (or by weight)
  double weight = 0.0;         // > 0: take round(weight * size) samples
  std::string name;            // as the recipe wrote it, for messages
};

// Splits "path#N" into the path and N (a suffix of digits after the last '#'); without one, count = -1.
// Throws engine::Error for "#" followed by something other than a positive integer.
DataSource parse_data_source(const std::string& text);

// The records of a JSON array, JSONL or CSV file as JSON texts (JSONL lines verbatim, so that malformed ones
// are reported as usual). Refuses .parquet (and .arrow) with the conversion command.
std::vector<std::string> read_record_texts(const std::filesystem::path& file);

// The CSV file's rows as JSON objects of strings (RFC 4180: quoted fields, "" inside quotes, newlines in
// quotes; a UTF-8 BOM is skipped). Throws engine::Error naming the line of a malformed row.
std::vector<std::string> read_csv_records(const std::filesystem::path& file);

// Which of `size` records to take for `count` samples (see the header comment), seeded.
std::vector<size_t> sample_indices(size_t size, int64_t count, uint64_t seed);

// The one file a run reads for `sources`: the file itself when there is one JSON/JSONL source taken whole,
// else the mixture file written (once per content) under cache_dir.
std::filesystem::path materialise_sources(const std::vector<DataSource>& sources, uint64_t seed,
                                          const std::filesystem::path& cache_dir);

// The data file of a dataset folder (a Hub snapshot or a local folder): its one JSON / JSONL / CSV file, or
// the one whose name contains `role` ("train", "eval") when there are several. A folder with only Parquet
// files is refused with how to convert them; several candidates are refused with their list.
std::filesystem::path dataset_file_in(const std::filesystem::path& folder, const std::string& role,
                                      const std::string& what);

// True for the extensions the readers take: .json, .jsonl, .csv.
bool is_data_file(const std::filesystem::path& file);

// engine::Error unless `file` is a format the readers take (JSON, JSONL, CSV); Parquet gets the conversion.
void check_readable_format(const std::filesystem::path& file, const std::string& what);

}  // namespace engine::data
