/* mma.h for the CPU emulation: WMMA is in cuda_emu.h. */
#pragma once
#include "cuda_emu.h"
