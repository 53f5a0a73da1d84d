/*
 * engine/abi/peft.h: the parameter-efficient fine-tuning plugin table (kind ENG_KIND_PEFT), ABI v1.
 *
 * A PEFT method picks target linears (by walking the parameter store), declares its trainable adapter
 * parameters, attaches itself to each target (host->peft_attach) and then, every time the engine resolves
 * linear(x, target), adds its term with host ops. It exports in Hugging Face PEFT's format and merges.
 */
#ifndef ENGINE_ABI_PEFT_H
#define ENGINE_ABI_PEFT_H

#include "engine/abi/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* peft capability flags (bits 16..) */
#define ENG_PEFT_CAP_QUANTIZED_BASE (1ull << 16) /* works when the base weight is held by a quantizer */
#define ENG_PEFT_CAP_MERGE (1ull << 17)          /* can merge its delta into a dense base weight      */

typedef struct eng_peft_vtable {
  uint32_t struct_size;
  eng_status (*create)(const eng_host_api* host, const eng_ctx* ctx, const char* options_json, void** self);
  void (*destroy)(void* self);
  /* after the model declared its parameters: choose targets, declare adapters, host->peft_attach each */
  eng_status (*attach)(void* self, const eng_ctx* ctx);
  /* base_out = linear(x, base weight) already computed; *out = base_out + the adapter's term */
  eng_status (*linear)(void* self, const eng_ctx* ctx, void* cookie, eng_tensor x, eng_tensor base_out,
                       eng_tensor* out);
  /* weight: the dense base weight (out,in) in fp32; *out = weight with the adapter merged in */
  eng_status (*merge)(void* self, const eng_ctx* ctx, void* cookie, eng_tensor weight, eng_tensor* out);
  /* write the adapter in the reference format (PEFT: adapter_config.json + adapter_model.safetensors).
     base_model_path: recorded in the config for loaders */
  eng_status (*save)(void* self, const eng_ctx* ctx, const char* dir, const char* base_model_path);
  /* load adapter values written by save (or by the reference implementation) into the declared params */
  eng_status (*load)(void* self, const eng_ctx* ctx, const char* dir);
} eng_peft_vtable;

#ifdef __cplusplus
}
#endif

#endif /* ENGINE_ABI_PEFT_H */
