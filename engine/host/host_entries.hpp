// The entries of the host service table (eng_host_api in engine/abi/engine.h), each defined in the file of
// its concern; host_api.cpp puts them in the table. Every entry that takes a context finds its HostSession
// through ctx->host_data and reports failures as a status plus a message in the session's error slot
// (entry_guard.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/abi/engine.h"

namespace engine::host {

// session_entries.cpp: logging, the error slot, the block seam, the run's generator.
void h_log(const eng_ctx* ctx, eng_log_level level, const char* message);
void h_set_error(const eng_ctx* ctx, eng_status code, const char* message);
const char* h_get_error(const eng_ctx* ctx);
eng_status h_block_begin(const eng_ctx* ctx, int32_t block);
eng_status h_block_end(const eng_ctx* ctx, int32_t block);
uint64_t h_rng_next_u64(const eng_ctx* ctx);

// tensor_entries.cpp: tensors, their DLPack view, raw device memory.
eng_status h_tensor_empty(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                          eng_tensor* out);
eng_status h_tensor_zeros(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                          eng_tensor* out);
eng_status h_tensor_from_host(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                              const void* data, size_t bytes, eng_tensor* out);
eng_status h_tensor_to_host(const eng_ctx* ctx, eng_tensor t, void* dst, size_t bytes);
void h_tensor_retain(eng_tensor t);
void h_tensor_release(eng_tensor t);
int32_t h_tensor_ndim(eng_tensor t);
int64_t h_tensor_dim(eng_tensor t, int32_t i);
eng_dtype h_tensor_dtype(eng_tensor t);
eng_status h_tensor_dlpack(eng_tensor t, DLTensor* out);
eng_status h_device_alloc(const eng_ctx* ctx, size_t bytes, void** out);
eng_status h_device_properties(const eng_ctx* ctx, eng_device_properties* out);
void h_device_free(const eng_ctx* ctx, void* ptr);

// op_table.cpp: custom-op registration (the op table itself is op_table() in host_api.hpp).
eng_status h_op_register(const eng_ctx* ctx, const eng_custom_op* op, eng_op_id* out);

// param_entries.cpp: the parameter store and the PEFT attachment of a linear weight.
eng_status h_param_declare(const eng_ctx* ctx, const eng_param_decl* decl, eng_param* out);
int64_t h_param_count(const eng_ctx* ctx);
eng_param h_param_at(const eng_ctx* ctx, int64_t index);
eng_param h_param_find(const eng_ctx* ctx, const char* name);
eng_status h_param_info(eng_param p, eng_param_info* out);
eng_status h_param_value(const eng_ctx* ctx, eng_param p, eng_tensor* out);
eng_status h_param_grad(const eng_ctx* ctx, eng_param p, eng_tensor* out);
eng_status h_param_set_trainable(const eng_ctx* ctx, eng_param p, int32_t trainable);
eng_status h_file_write(const eng_ctx* ctx, const char* path, const void* data, size_t bytes);
eng_status h_target_match(const eng_ctx* ctx, const char* spec_json, const char* name, int32_t* out);
// appended in ABI 1.1: parameter placement (zero3/fsdp)
eng_status h_param_set_local(const eng_ctx* ctx, eng_param p, int64_t shard);
eng_status h_param_gather(const eng_ctx* ctx, eng_param p);
eng_status h_param_release(const eng_ctx* ctx, eng_param p);
eng_status h_param_reduce_grad(const eng_ctx* ctx, eng_param p);
eng_status h_param_local(const eng_ctx* ctx, eng_param p, eng_tensor* value, eng_tensor* grad);
eng_status h_param_set_local_flat(const eng_ctx* ctx, const eng_param* params, int64_t count);
eng_status h_param_set_split(const eng_ctx* ctx, eng_param p, int32_t dim);
eng_status h_param_set_holder(const eng_ctx* ctx, eng_param p, int32_t holder);
eng_status h_group_all_reduce_sum(const eng_ctx* ctx, eng_tensor t, int32_t group);
eng_status h_peft_attach(const eng_ctx* ctx, eng_param base, void* cookie);

// state_entries.cpp: state dictionaries.
eng_status h_state_put(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor t);
eng_status h_state_get(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor* out);
eng_status h_state_create(const eng_ctx* ctx, eng_state* out);
void h_state_destroy(eng_state st);
int64_t h_state_size(eng_state st);
const char* h_state_key_at(eng_state st, int64_t i);

// safetensors_entries.cpp: state dictionaries to and from safetensors files.
eng_status h_safetensors_write(const eng_ctx* ctx, const char* path, eng_state st, const char* metadata_json);
eng_status h_safetensors_read(const eng_ctx* ctx, const char* path, eng_state* out);

// collective_entries.cpp: collectives on the session's communicator.
eng_status h_all_reduce_sum(const eng_ctx* ctx, eng_tensor t);
eng_status h_broadcast(const eng_ctx* ctx, eng_tensor t, int32_t root);
eng_status h_all_gather(const eng_ctx* ctx, eng_tensor shard, eng_tensor full);
eng_status h_reduce_scatter_sum(const eng_ctx* ctx, eng_tensor full, eng_tensor shard);
eng_status h_barrier(const eng_ctx* ctx);

}  // namespace engine::host
