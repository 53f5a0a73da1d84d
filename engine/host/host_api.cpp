// The host service table (eng_host_api): every entry in the order of engine/abi/engine.h, defined in the
// file of its concern (host_entries.hpp lists them).
#include "engine/host/host_api.hpp"

#include "engine/host/host_entries.hpp"

namespace engine::host {

const eng_host_api* host_api() {
  // Initialised on first use, so a caller during static initialisation never sees an empty table.
  static const eng_host_api kHostApi = {
      .struct_size = sizeof(eng_host_api),
      .abi_version = ENG_ABI_VERSION,
      .log = h_log,
      .set_error = h_set_error,
      .get_error = h_get_error,
      .tensor_empty = h_tensor_empty,
      .tensor_zeros = h_tensor_zeros,
      .tensor_from_host = h_tensor_from_host,
      .tensor_to_host = h_tensor_to_host,
      .tensor_retain = h_tensor_retain,
      .tensor_release = h_tensor_release,
      .tensor_ndim = h_tensor_ndim,
      .tensor_dim = h_tensor_dim,
      .tensor_dtype = h_tensor_dtype,
      .tensor_dlpack = h_tensor_dlpack,
      .device_alloc = h_device_alloc,
      .device_free = h_device_free,
      .ops = op_table(),
      .op_register = h_op_register,
      .param_declare = h_param_declare,
      .param_count = h_param_count,
      .param_at = h_param_at,
      .param_find = h_param_find,
      .param_info = h_param_info,
      .param_value = h_param_value,
      .param_grad = h_param_grad,
      .param_set_trainable = h_param_set_trainable,
      .peft_attach = h_peft_attach,
      .block_begin = h_block_begin,
      .block_end = h_block_end,
      .rng_next_u64 = h_rng_next_u64,
      .state_put = h_state_put,
      .state_get = h_state_get,
      .all_reduce_sum = h_all_reduce_sum,
      .broadcast = h_broadcast,
      .all_gather = h_all_gather,
      .reduce_scatter_sum = h_reduce_scatter_sum,
      .barrier = h_barrier,
      .state_create = h_state_create,
      .state_destroy = h_state_destroy,
      .state_size = h_state_size,
      .state_key_at = h_state_key_at,
      .safetensors_write = h_safetensors_write,
      .safetensors_read = h_safetensors_read,
      .device_properties = h_device_properties,
      .target_match = h_target_match,
      .file_write = h_file_write,
      .param_set_local = h_param_set_local,
      .param_gather = h_param_gather,
      .param_release = h_param_release,
      .param_reduce_grad = h_param_reduce_grad,
      .param_local = h_param_local,
      .param_set_local_flat = h_param_set_local_flat,
      .param_set_split = h_param_set_split,
      .group_all_reduce_sum = h_group_all_reduce_sum,
      .param_set_holder = h_param_set_holder,
  };
  return &kHostApi;
}

}  // namespace engine::host
