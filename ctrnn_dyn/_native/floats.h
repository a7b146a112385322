// The float types the kernels of ctrnn_dyn.native take, dispatched at run time.
#pragma once

#include "xla/ffi/api/ffi.h"

namespace ctrnn_dyn {

// run(T{}) with T the float type of `type`; float32 and float64 only.
template <typename Run>
xla::ffi::Error ByType(xla::ffi::DataType type, Run run) {
  switch (type) {
    case xla::ffi::DataType::F32:
      return run(float{});
    case xla::ffi::DataType::F64:
      return run(double{});
    default:
      return xla::ffi::Error::InvalidArgument("dtype must be float32 or float64");
  }
}

}  // namespace ctrnn_dyn
