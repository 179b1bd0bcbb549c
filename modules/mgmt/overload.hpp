// std::visit over a Change or a FieldValue with one lambda per alternative.
#pragma once

namespace mqnode::mgmt {

template <class... F>
struct Overload : F... {
  using F::operator()...;
};
template <class... F>
Overload(F...) -> Overload<F...>;

}  // namespace mqnode::mgmt
