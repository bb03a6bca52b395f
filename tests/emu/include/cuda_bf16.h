/* cuda_bf16.h for the CPU emulation: the type is in cuda_emu.h. */
#pragma once
#include "cuda_emu.h"
