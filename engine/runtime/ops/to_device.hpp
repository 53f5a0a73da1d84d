// to_device: the autograd op that moves a tensor to another device (layer placement: the hidden states from
// one device's blocks to the next device's). Forward copies to the target; backward copies the gradient back
// to the input's device. A tensor already on the target passes through.
#pragma once

#include <memory>

#include "engine/runtime/node.hpp"

namespace engine::rt::ops {

std::unique_ptr<Node> make_to_device(Device& target);

}  // namespace engine::rt::ops
