/* engine/abi/all.h: every header of the plugin C ABI. */
#ifndef ENGINE_ABI_ALL_H
#define ENGINE_ABI_ALL_H
#include "engine/abi/engine.h"
#include "engine/abi/model.h"
#include "engine/abi/optimizer.h"
#include "engine/abi/parallel.h"
#include "engine/abi/peft.h"
#include "engine/abi/quantizer.h"
#endif
