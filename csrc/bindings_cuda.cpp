// videoseg_o3._C_cuda: the CUDA twins of the _C ops. Pointers arrive as integers (torch's
// data_ptr()) with shapes and strides, and the stream as torch's current cudaStream_t, so this
// module needs neither torch nor CUDA headers; the kernels live in the .cu files.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "array_views.h"
#include "frame_prep.h"
#include "frame_prep_cuda.h"

namespace py = pybind11;
using namespace videoseg;

namespace {

void prepare_frames_binding(std::uintptr_t frames_ptr, const std::string& pixel_format,
                            const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                            const py::array& host_boxes, std::uintptr_t device_boxes_ptr, std::uintptr_t out_ptr,
                            int64_t out_h, int64_t out_w, const std::array<float, 3>& scale,
                            const std::array<float, 3>& bias, const std::array<float, 9>& yuv_matrix,
                            std::uintptr_t stream) {
  FrameBatch f = describe_frames(parse_pixel_format(pixel_format), shape, strides);
  f.data = reinterpret_cast<const uint8_t*>(frames_ptr);
  OutputSpec o;
  o.data = reinterpret_cast<float*>(out_ptr);
  o.height = out_h;
  o.width = out_w;
  // The device copy cannot be read here; its host twin is checked so no thread reads out of bounds.
  throw_if_inconsistent(f, boxes_pointer(host_boxes, f.num_frames), o);
  const Normalize norm = make_normalize(scale, bias);
  const YuvMatrix yuv = make_yuv(yuv_matrix);
  py::gil_scoped_release release;
  prepare_frames_cuda(f, reinterpret_cast<const int32_t*>(device_boxes_ptr), o, norm, yuv, stream);
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "videoseg_o3 compiled CUDA ops (torch-free; device pointers and streams as integers).";
  m.def("prepare_frames", &prepare_frames_binding, py::arg("frames_ptr"), py::arg("pixel_format"), py::arg("shape"),
        py::arg("strides"), py::arg("host_boxes").noconvert(), py::arg("device_boxes_ptr"), py::arg("out_ptr"),
        py::arg("out_h"), py::arg("out_w"), py::arg("scale"), py::arg("bias"), py::arg("yuv_matrix"),
        py::arg("stream"),
        R"doc(Queue the CUDA frame preparation on `stream` (asynchronous).

frames_ptr: device uint8, shape/strides in elements: (n, H, W, 3) "rgb" or (n, H*3/2, W) "nv12".
host_boxes: int32 (n, 4) numpy copy of the boxes at device_boxes_ptr (checked here).
out_ptr: device float32 (n, 3, out_h, out_w), C-contiguous.)doc");
  // What the module was compiled for, for diagnostics (set by CMakeLists.txt).
  m.attr("cuda_architectures") = VIDEOSEG_CUDA_ARCHITECTURES;
  m.attr("cuda_compiler_version") = VIDEOSEG_CUDA_COMPILER_VERSION;
}
