// Dataset readers: a JSON array or JSONL file of records in one of three forms, read into Examples.
//   alpaca    {"instruction": ..., "input": ... (optional), "output": ..., "system": ... (optional)}
//             becomes user = instruction, or instruction + "\n\n" + input when input is not empty;
//             assistant = output
//   messages  {"messages": [{"role": "user", "content": ...}, ...]} with roles system/user/assistant, or
//             ShareGPT's {"conversations": [{"from": "human", "value": ...}, ...]} with system/human/gpt
//   text      {"text": ...}: plain text, every token trained (continued pre-training)
//   tokens    {"input_ids": [...]}: token ids as they are (no tokenizer, no template), every token trained;
//             for benchmarks and for data tokenized elsewhere (ids are checked against the model's vocabulary)
// Field names are options (data.fields.*). With format = kAuto each record's form is recognised from its
// fields.
//
// A malformed record is reported as "<file>:<line>: <what is wrong>" (a JSON array's records are numbered by
// the line they start on). With on_error = kSkip it is logged, skipped and counted; with kFail the first one
// throws engine::Error with that message followed by kOnErrorFailHint. The messages are:
//   <file>:<line>: not valid JSON: <parser message>
//   <file>:<line>: expected a JSON object, got <type>
//   <file>:<line>: field "<name>" must be a string
//   <file>:<line>: no "<name>" field (<form> form; map other names with data.fields)
//   <file>:<line>: "<messages field>" must be a non-empty array of messages
//   <file>:<line>: message <k>: role "<role>" is not one of system, user, assistant (ShareGPT: human, gpt)
//   <file>:<line>: no assistant message to train on
//   <file>:<line>: record matches no known form (alpaca: instruction/output; messages; text; tokens: input_ids)
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/data/chat_template.hpp"

namespace engine::data {

enum class DatasetFormat { kAuto, kAlpaca, kMessages, kText, kTokens };

// What a failing malformed record's message ends with: the two ways out.
inline constexpr char kOnErrorFailHint[] =
    " (fix or remove that record, or set data.on_error = \"skip\" to skip and count malformed records)";
enum class OnError { kSkip, kFail };

// data.format = "auto" | "alpaca" | "messages" | "sharegpt" | "text"; data.on_error = "skip" | "fail".
DatasetFormat parse_dataset_format(const std::string& name);
OnError parse_on_error(const std::string& name);

struct DatasetFields {
  std::string instruction = "instruction";
  std::string input = "input";
  std::string output = "output";
  std::string system = "system";
  std::string messages = "messages";  // "conversations" is also tried (ShareGPT)
  std::string role = "role";          // "from" is also tried
  std::string content = "content";    // "value" is also tried
  std::string text = "text";
};

struct DatasetOptions {
  DatasetFormat format = DatasetFormat::kAuto;
  DatasetFields fields;
  OnError on_error = OnError::kSkip;
};

struct Example {
  bool is_text = false;
  std::string text;                   // is_text
  bool is_tokens = false;
  std::vector<int32_t> ids;           // is_tokens
  std::vector<ChatMessage> messages;  // otherwise
  std::string where;                  // "<file>:<line>"
};

struct Dataset {
  std::vector<Example> examples;
  size_t skipped = 0;
  std::vector<std::string> errors;  // the first few skip messages, for the run's report
};

// Reads `path` (a .json array or JSONL; a file whose first non-space byte is '[' is taken as an array).
Dataset read_dataset(const std::filesystem::path& path, const DatasetOptions& options);

// Parses one record (used by read_dataset; exposed for tests). Throws engine::Error with the messages above.
Example parse_record(const std::string& json_text, const DatasetOptions& options, const std::string& where);

}  // namespace engine::data
