// A matrix-level reverse-mode tape (Stan Math / FastAD style).
//
// Recording: every operation appends one node holding a whole matrix: its value
// and its adjoint live in an arena, the operands are node indices. Nodes are
// appended in creation order, which is a topological order, so differentiating
// is a reverse walk over the nodes, each calling its op's backward rule (a plain
// function pointer: no virtual calls, no std::function, no per-scalar nodes).
//
//     ad::Tape<float> tape;
//     auto W = tape.leaf(w, grad, layout.at("W"));  // a view of w's block, no copy;
//     auto X = tape.leaf(batch.data(), 784, 128);   //   its gradient lands in grad
//     auto loss = ad::mean(ad::square(ad::matmul(W, X)));
//     tape.backward(loss);                          // grad's block += ∂loss/∂W
//     tape.clear();                                 // keeps every buffer
//
// Costs: a node is ~100 bytes plus its value and adjoint; values are computed
// when recorded; backward zeroes the arena adjoints once, then runs the rule of
// every node that depends on a variable (constants and input batches are not
// differentiated). clear() and rewind() keep all capacity and large products
// reuse their packing buffers (gemm.hpp), so the second and later recordings of
// the same computation allocate nothing.
//
// Scopes: `auto m = tape.mark(); … tape.rewind(m);` drops what was recorded after
// the mark (an inner gradient taken inside an outer recording). A Var from a
// rewound or cleared part of the tape is detected on use and throws.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "../core/error.hpp"
#include "../core/layout.hpp"
#include "../core/types.hpp"
#include "arena.hpp"
#include "gemm.hpp"

namespace scaltra::ad {

template <class S>
class Tape;

/// A handle to one node of a tape: an index and the node's serial number.
template <class S>
class Var {
public:
    using Scalar = S;

    Var() = default;

    Tape<S>& tape() const {
        if (tape_ == nullptr)
            throw InvalidArgument("ad: use of an empty Var");
        return *tape_;
    }
    std::uint32_t index() const { return index_; }
    std::uint64_t serial() const { return serial_; }
    Index rows() const { return tape().checked(*this).rows; }
    Index cols() const { return tape().checked(*this).cols; }
    /// The recorded value (valid until the tape grows: read it, do not keep it).
    auto value() const { return tape().value(*this); }
    /// The adjoint ∂root/∂this after a backward pass.
    auto adjoint() const { return tape().adjoint(*this); }

private:
    friend class Tape<S>;
    Var(Tape<S>* tape, std::uint32_t index, std::uint64_t serial)
        : tape_(tape), index_(index), serial_(serial) {}

    Tape<S>* tape_ = nullptr;
    std::uint32_t index_ = 0;
    std::uint64_t serial_ = 0;
};

/// What an op's backward rule receives: the node, to read its operands and
/// parameters through the tape.
template <class S>
struct Node {
    using Backward = void (*)(Tape<S>&, const Node&);

    Index rows = 0, cols = 0;
    Index offset = 0;                   ///< value and adjoint offset in the arenas
    const S* external_value = nullptr;  ///< a leaf viewing the caller's memory
    S* external_gradient = nullptr;     ///< where a leaf's gradient accumulates
    Backward backward = nullptr;        ///< null for leaves
    std::uint32_t in[2] = {0, 0};       ///< operand node indices
    S param = S(0);                     ///< a scalar parameter of the op
    Index iparam[4] = {0, 0, 0, 0};     ///< integer parameters of the op
    Index int_offset = 0;               ///< start of the op's integers in the integer arena
    bool needs_gradient = false;        ///< depends on a variable: backward must reach it
    std::uint64_t serial = 0;
};

template <class S>
class Tape {
public:
    using MatMap = Eigen::Map<Mat<S>>;

    /// A point of the recording to come back to.
    struct Mark {
        std::size_t nodes;
        Index values;
        Index integers;
    };

    Tape() = default;
    Tape(const Tape&) = delete;  // Vars point at their tape
    Tape& operator=(const Tape&) = delete;

    // ---- leaves ------------------------------------------------------------

    /// A leaf holding a copy of `value`; its gradient is read with adjoint().
    Var<S> variable(const Eigen::Ref<const Mat<S>>& value) {
        Var<S> v = push(value.rows(), value.cols());
        nodes_.back().needs_gradient = true;
        this->value(v) = value;
        return v;
    }

    /// A constant: a leaf holding a copy of `value`, with no gradient; nothing
    /// that depends only on constants is differentiated.
    Var<S> constant(const Eigen::Ref<const Mat<S>>& value) {
        Var<S> v = push(value.rows(), value.cols());
        this->value(v) = value;
        return v;
    }

    /// A leaf viewing rows×cols elements of the caller's memory (column-major), no
    /// copy. With a `gradient` buffer, backward adds this leaf's gradient there;
    /// without one the leaf is a constant (an input batch). Both buffers must
    /// outlive the recording.
    Var<S> leaf(const S* data, Index rows, Index cols, S* gradient = nullptr) {
        if (rows <= 0 || cols <= 0)
            throw DimensionMismatch(
                scaltra::detail::concat("leaf: shape ", rows, "x", cols, " must be positive"));
        Node<S> node;
        node.rows = rows;
        node.cols = cols;
        node.external_value = data;
        node.external_gradient = gradient;
        node.needs_gradient = gradient != nullptr;
        if (gradient == nullptr)
            node.offset = allocate(rows * cols);  // its adjoint lives in the arena
        return append(node);
    }

    /// Block `b` of a flat parameter vector as a leaf (a view reshaped to the
    /// block's matrix), its gradient landing in the same block of `gradient`.
    Var<S> leaf(const Eigen::Ref<const Vec<S>>& flat, Eigen::Ref<Vec<S>> gradient, const Block& b) {
        if (flat.size() != gradient.size() || !fits(b, flat.size()))
            throw DimensionMismatch(
                scaltra::detail::concat("leaf: block '", b.name, "' [", b.offset, ", ",
                                        b.offset + b.size(), ") does not fit a vector of ",
                                        flat.size(), " with a gradient of ", gradient.size()));
        return leaf(flat.data() + b.offset, b.rows, b.cols, gradient.data() + b.offset);
    }

    // ---- recording ops (used by ops.hpp) ------------------------------------

    /// Appends a node with an uninitialised rows×cols value; its op fills it.
    Var<S> push(Index rows, Index cols, typename Node<S>::Backward backward = nullptr,
                std::initializer_list<Var<S>> operands = {}) {
        Node<S> node;
        node.rows = rows;
        node.cols = cols;
        node.backward = backward;
        std::size_t k = 0;
        for (const Var<S>& operand : operands) {
            node.in[k++] = checked_index(operand);
            node.needs_gradient = node.needs_gradient || nodes_[node.in[k - 1]].needs_gradient;
        }
        node.offset = allocate(rows * cols);
        return append(node);
    }

    /// Copies integers (labels, a permutation) into the tape for v's op, which reads
    /// them back with integers(node).
    void store_integers(const Var<S>& v, const Index* data, Index count) {
        Node<S>& node = nodes_[checked_index(v)];
        node.int_offset = integers_.allocate(count);
        std::copy(data, data + count, integers_.data() + node.int_offset);
    }

    Node<S>& node(const Var<S>& v) { return nodes_[checked_index(v)]; }
    const Node<S>& node(std::uint32_t index) const { return nodes_[index]; }
    const Index* integers(const Node<S>& n) const { return integers_.data() + n.int_offset; }

    MatMap value(const Var<S>& v) { return value(checked(v)); }
    MatMap adjoint(const Var<S>& v) { return adjoint(checked(v)); }
    MatMap value(const Node<S>& n) {
        S* p = n.external_value != nullptr ? const_cast<S*>(n.external_value)
                                           : values_.data() + n.offset;
        return MatMap(p, n.rows, n.cols);
    }
    MatMap adjoint(const Node<S>& n) {
        S* p = n.external_gradient != nullptr ? n.external_gradient : adjoints_.data() + n.offset;
        return MatMap(p, n.rows, n.cols);
    }
    /// Whether operand k of node n needs its adjoint (a backward rule may skip it).
    bool wants(const Node<S>& n, int k) const { return nodes_[n.in[k]].needs_gradient; }
    /// Operand k of node n.
    MatMap value_in(const Node<S>& n, int k) { return value(nodes_[n.in[k]]); }
    MatMap adjoint_in(const Node<S>& n, int k) { return adjoint(nodes_[n.in[k]]); }

    // ---- differentiation ----------------------------------------------------

    /// Reverse sweep from a 1×1 root: afterwards every node's adjoint is
    /// ∂root/∂node, and leaves with an external gradient have it added there.
    void backward(const Var<S>& root) {
        const Node<S>& r = checked(root);
        if (r.rows != 1 || r.cols != 1)
            throw DimensionMismatch(
                scaltra::detail::concat("backward: the root must be 1x1, got ", r.rows, "x", r.cols,
                                        " (use vjp with a seed for a non-scalar output)"));
        start_sweep();
        adjoint(r)(0, 0) += S(1);
        sweep(root.index());
    }

    /// Vector-Jacobian product: the reverse sweep seeded with ∂L/∂output = seed.
    void vjp(const Var<S>& output, const Eigen::Ref<const Mat<S>>& seed) {
        const Node<S>& r = checked(output);
        if (seed.rows() != r.rows || seed.cols() != r.cols)
            throw DimensionMismatch(scaltra::detail::concat("vjp: seed ", seed.rows(), "x",
                                                            seed.cols(), " for an output ", r.rows,
                                                            "x", r.cols));
        start_sweep();
        adjoint(r) += seed;
        sweep(output.index());
    }

    // ---- scopes ---------------------------------------------------------------

    Mark mark() const { return {nodes_.size(), values_.top(), integers_.top()}; }

    /// Drops every node recorded after `m`; their Vars become invalid.
    void rewind(const Mark& m) {
        if (m.nodes > nodes_.size() || m.values > values_.top() || m.integers > integers_.top())
            throw InvalidArgument(
                "rewind: the mark is ahead of the tape (already rewound, or another tape's?)");
        nodes_.resize(m.nodes);  // shrinking: no allocation
        values_.reset(m.values);
        adjoints_.reset(m.values);
        integers_.reset(m.integers);
    }

    /// Drops the whole recording, keeping every buffer for the next one.
    void clear() { rewind({0, 0, 0}); }

    std::size_t size() const { return nodes_.size(); }

    /// Products without allocation once warmed up (used by matmul).
    detail::GemmWorkspace<S>& gemm() { return gemm_; }

    /// The node behind v, after checking that v belongs to this tape and that its
    /// node has not been rewound or cleared away.
    const Node<S>& checked(const Var<S>& v) const { return nodes_[checked_index(v)]; }

private:
    std::uint32_t checked_index(const Var<S>& v) const {
        if (v.tape_ != this)
            throw InvalidArgument(v.tape_ == nullptr ? "ad: use of an empty Var"
                                                     : "ad: a Var from another tape");
        if (v.index_ >= nodes_.size() || nodes_[v.index_].serial != v.serial_)
            throw InvalidArgument("ad: use of a Var whose part of the tape was rewound or cleared");
        return v.index_;
    }

    /// n elements in both arenas, which stay in step: one offset serves both.
    Index allocate(Index n) {
        const Index offset = values_.allocate(n);
        adjoints_.allocate(n);
        return offset;
    }

    Var<S> append(Node<S> node) {
        node.serial = ++serial_;
        nodes_.push_back(node);
        return Var<S>(this, static_cast<std::uint32_t>(nodes_.size() - 1), node.serial);
    }

    /// Zeroes every arena adjoint (external gradients accumulate, as torch's .grad).
    void start_sweep() { std::fill(adjoints_.data(), adjoints_.data() + adjoints_.top(), S(0)); }

    void sweep(std::uint32_t root) {
        for (std::uint32_t i = root + 1; i-- > 0;) {
            const Node<S>& n = nodes_[i];
            if (n.backward != nullptr && n.needs_gradient)
                n.backward(*this, n);
        }
    }

    std::vector<Node<S>> nodes_;
    detail::Arena<S> values_;
    detail::Arena<S> adjoints_;
    detail::Arena<Index> integers_;
    detail::GemmWorkspace<S> gemm_;
    std::uint64_t serial_ = 0;
};

}  // namespace scaltra::ad
