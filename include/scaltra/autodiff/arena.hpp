// A growable, uninitialised buffer handed out in 64-byte-aligned slices. reset()
// keeps the capacity, so after a first pass that sizes it, later passes allocate
// nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>

#include "../core/types.hpp"

namespace scaltra::ad::detail {

template <class T>
class Arena {
public:
    /// Reserves n elements; returns their offset (valid until reset below it).
    Index allocate(Index n) {
        constexpr Index align =
            static_cast<Index>(64 / sizeof(T)) > 0 ? static_cast<Index>(64 / sizeof(T)) : 1;
        const Index offset = (top_ + align - 1) / align * align;
        const Index end = offset + n;
        if (end > capacity_)
            grow(std::max(end, 2 * capacity_));
        top_ = end;
        return offset;
    }

    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    Index top() const { return top_; }
    Index capacity() const { return capacity_; }

    /// Drops everything from `top` on; keeps the memory.
    void reset(Index top = 0) { top_ = top; }

private:
    void grow(Index capacity) {
        std::unique_ptr<T[]> bigger(new T[static_cast<std::size_t>(capacity)]);
        std::copy(data_.get(), data_.get() + top_, bigger.get());
        data_ = std::move(bigger);
        capacity_ = capacity;
    }

    std::unique_ptr<T[]> data_;
    Index top_ = 0;
    Index capacity_ = 0;
};

}  // namespace scaltra::ad::detail
