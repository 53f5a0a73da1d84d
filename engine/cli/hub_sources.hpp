// Hub ids of a recipe (model.path, data.train, data.eval given as org/name[@revision]) turned into local
// folders and files before a run: downloaded into the Hugging Face cache when missing (engine/hub), or found
// there (or in ModelScope's cache) when offline or when the Hub cannot be reached.
#pragma once

#include "engine/recipe/recipe.hpp"

namespace engine::cli {

struct HubSourceOptions {
  bool download = true;  // false: the cache only (engine plan, validate)
  bool offline = false;  // --offline or HF_HUB_OFFLINE: the cache only, and say so when something is missing
};

// Sets recipe.model.path to the model's snapshot and each Hub source of data.train / data.eval to the data
// file of its snapshot (data::dataset_file_in; a local folder source likewise). Throws engine::Error naming what is missing and the command that fetches it.
void resolve_hub_sources(recipe::Recipe& recipe, const HubSourceOptions& options);

}  // namespace engine::cli
