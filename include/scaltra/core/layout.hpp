// Layout: named blocks of one flat parameter vector, each with its matrix shape,
// so per-layer optimizers (SCALTRA's b and tau, APO's Kronecker factors, LODO's
// blocks) know where each layer lives. Blocks are stored column-major, as Eigen.
#pragma once

#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "error.hpp"
#include "types.hpp"

namespace scaltra {

/// One named block of a flat vector: elements [offset, offset + rows*cols).
struct Block {
    std::string name;
    Index offset = 0;
    Index rows = 0;
    Index cols = 1;

    Index size() const { return rows * cols; }
    bool operator==(const Block&) const = default;
};

class Layout {
public:
    Layout() = default;

    /// A single vector block named "x" of n elements: what a plain optimizer needs.
    Layout(Index n) { add("x", n); }  // NOLINT(google-explicit-constructor): sizes convert

    /// Appends a rows×cols block; names must be unique and shapes positive.
    Layout& add(std::string name, Index rows, Index cols = 1) {
        if (rows <= 0 || cols <= 0)
            throw InvalidArgument(detail::concat("Invalid shape of block '", name, "': ", rows, "x",
                                                 cols, ", both must be positive"));
        constexpr Index most = std::numeric_limits<Index>::max();
        if (rows > most / cols || size_ > most - rows * cols)
            throw InvalidArgument(detail::concat("Invalid shape of block '", name, "': ", rows, "x",
                                                 cols, " overflows the layout's size"));
        if (find(name) != nullptr)
            throw InvalidArgument(detail::concat("Duplicate block name '", name, "'"));
        blocks_.push_back(Block{std::move(name), size_, rows, cols});
        size_ += rows * cols;
        return *this;
    }

    /// Total number of elements of the flat vector.
    Index size() const { return size_; }
    std::size_t num_blocks() const { return blocks_.size(); }
    const std::vector<Block>& blocks() const { return blocks_; }
    const Block& operator[](std::size_t i) const {
        require_index(i);
        return blocks_[i];
    }

    /// Throws InvalidArgument unless i < num_blocks().
    void require_index(std::size_t i) const {
        if (i >= blocks_.size())
            throw InvalidArgument(detail::concat(
                "Block index ", i, " out of range: the layout has ", blocks_.size(), " blocks"));
    }

    /// The block called `name`, or nullptr.
    const Block* find(std::string_view name) const {
        for (const auto& b : blocks_)
            if (b.name == name)
                return &b;
        return nullptr;
    }

    /// The block called `name`; throws InvalidArgument when there is none.
    const Block& at(std::string_view name) const {
        if (const Block* b = find(name))
            return *b;
        throw InvalidArgument(detail::concat("No block named '", name, "' in the layout"));
    }

    bool operator==(const Layout&) const = default;

private:
    std::vector<Block> blocks_;
    Index size_ = 0;
};

/// Whether `b` lies inside a vector of n elements (a hand-built Block may not).
inline bool fits(const Block& b, Index n) {
    return b.offset >= 0 && b.rows >= 0 && b.cols >= 0 && b.offset <= n - b.size();
}

/// Block `b` of a flat vector `x` (a Vec, Map or Ref), viewed as its rows×cols
/// matrix without a copy; const when `x` is. Throws when `x` is too short (or
/// the block has a negative offset or shape: one not made by a Layout). Takes
/// lvalues only, so a view never outlives a temporary vector.
template <class Flat>
auto block_view(Flat& x, const Block& b) {
    using Pointer = decltype(x.data());
    using S = std::remove_const_t<std::remove_pointer_t<Pointer>>;
    using Matrix =
        std::conditional_t<std::is_const_v<std::remove_pointer_t<Pointer>>, const Mat<S>, Mat<S>>;
    if (!fits(b, x.size()))
        throw DimensionMismatch(detail::concat("Block '", b.name, "' [", b.offset, ", ",
                                               b.offset + b.size(), ") does not fit a vector of ",
                                               x.size()));
    return Eigen::Map<Matrix>(x.data() + b.offset, b.rows, b.cols);
}

}  // namespace scaltra
