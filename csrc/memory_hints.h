// Hints to the kernel about memory the ops are about to fill.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace videoseg {

// Ask for transparent huge pages on the 2 MiB-aligned interior of a large, freshly allocated output
// buffer. Why: a new (n, 3, h, w) float32 batch (16 x 448^2 is 38 MB) comes from fresh mmap'ed pages,
// and faulting them in 4 KiB at a time cost more than the resampling itself (~15 ms vs ~12 ms per
// batch on one core); with huge pages it is ~2 ms. Linux in THP "madvise" mode (a common default)
// only uses huge pages where asked. Purely advisory: failure changes nothing but speed.
inline void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{1} << 21;
  if (bytes < 4 * kHuge) return;  // small outputs: too few faults to matter
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace videoseg
