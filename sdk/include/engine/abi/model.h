/*
 * engine/abi/model.h: the model architecture plugin table (kind ENG_KIND_MODEL), ABI v1.
 *
 * A model reads a Hugging Face config.json, declares its parameters under their Hugging Face names (so that
 * safetensors checkpoints load by name), and writes the forward pass with host ops, wrapping each decoder
 * block in host->block_begin/block_end. It never multiplies by a projection weight itself: it calls
 * ops->linear(x, param), the linear seam through which quantizers and PEFT methods act.
 */
#ifndef ENGINE_ABI_MODEL_H
#define ENGINE_ABI_MODEL_H

#include "engine/abi/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* model capability flags (bits 16..) */
#define ENG_MODEL_CAP_KV_CACHE (1ull << 16) /* forward accepts batch->kv_cache (generation)        */
#define ENG_MODEL_CAP_PACKING (1ull << 17)  /* forward honours batch->segment_ids (packed samples) */

/* Sizes the engine needs for planning, loss and generation; strings owned by the model instance. */
typedef struct eng_model_info {
  uint32_t struct_size;
  int32_t n_layers;
  int64_t vocab_size;
  int64_t hidden_size;
  int64_t intermediate_size;
  int32_t n_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  int32_t tie_word_embeddings;
  int64_t max_position_embeddings;
  const char* lm_head_param;    /* the (V,C) weight of the output projection ("lm_head.weight", or the
                                   embedding's name when tied)                                        */
  const char* architecture;     /* HF "architectures"[0], e.g. "Qwen2ForCausalLM"                      */
  int64_t bos_token_id;         /* -1 if none */
  int64_t eos_token_id;         /* -1 if none */
} eng_model_info;

typedef struct eng_model_vtable {
  uint32_t struct_size;
  /* hf_config_json: the text of config.json; options_json: the recipe's [model] section */
  eng_status (*create)(const eng_host_api* host, const eng_ctx* ctx, const char* hf_config_json,
                       const char* options_json, void** self);
  void (*destroy)(void* self);
  eng_status (*info)(void* self, eng_model_info* out);
  /* declare every parameter through host->param_declare */
  eng_status (*declare_params)(void* self, const eng_ctx* ctx);
  /* batch -> final normalised hidden states (B,T,C); the engine applies lm_head (fused with the loss) */
  eng_status (*forward)(void* self, const eng_ctx* ctx, const eng_batch* batch, eng_tensor* hidden);
  /* (optional) a config.json text for a named preset ("tiny", "small") used by `engine init-model`;
     returns NULL for an unknown preset. Static storage. */
  const char* (*preset_config)(const char* preset);
  /* ---- ABI 1.1 (read only when struct_size covers it) ---- */
  /* (optional) the forward pass of the decoder blocks [first, last) alone, for pipeline parallelism: with
   * first == 0 it starts from batch->input_ids (the embedding), else from `input`, the (B,T,C) hidden states
   * after block first - 1; with last == n_layers it ends with the final norm (what forward returns), else
   * *out is the hidden states after block last - 1. forward(batch) is forward_blocks(batch, NULL, 0,
   * n_layers). Absent: the model cannot be cut into pipeline stages. */
  eng_status (*forward_blocks)(void* self, const eng_ctx* ctx, const eng_batch* batch, eng_tensor input,
                               int32_t first, int32_t last, eng_tensor* out);
} eng_model_vtable;

/* The size of the ABI 1.0 table (what a plugin built for 1.0 has). */
#define ENG_MODEL_VTABLE_SIZE_1_0 56u

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_MODEL_H */
