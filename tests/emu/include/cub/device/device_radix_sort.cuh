/* cub's DeviceRadixSort::SortPairs for the CPU emulation: a stable sort by
 * the key bits [begin_bit, end_bit), as CUB's LSD radix sort orders. */
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>

#include "../../cuda_runtime.h"

namespace cub {
struct DeviceRadixSort {
  template <typename K, typename V>
  static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *kin, K *kout, const V *vin,
                               V *vout, int n, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                               cudaStream_t = nullptr) {
    if (!temp) {
      temp_bytes = 16;
      return cudaSuccess;
    }
    const K mask = end_bit - begin_bit >= (int)sizeof(K) * 8
                       ? (K)~(K)0
                       : (K)((((K)1 << (end_bit - begin_bit)) - 1) << begin_bit);
    std::vector<int> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int a, int b) { return (kin[a] & mask) < (kin[b] & mask); });
    std::vector<K> k2(n);
    std::vector<V> v2(n);
    for (int i = 0; i < n; i++) k2[i] = kin[idx[i]], v2[i] = vin[idx[i]];
    std::copy(k2.begin(), k2.end(), kout);
    std::copy(v2.begin(), v2.end(), vout);
    return cudaSuccess;
  }
};
} // namespace cub
