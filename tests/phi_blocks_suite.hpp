// φ by block (README, "A state you build"): every learned optimizer names the
// blocks of its meta-parameters in meta_layout(), the names are the documented
// ones, the blocks tile φ, and each is live (changing it through set_state changes
// the next step). Registered per learned family by SCALTRA_PHI_BLOCKS_SUITE
// (cross_optimizer_suites.hpp).
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "optimizer_cases.hpp"
#include <catch2/catch.hpp>

namespace testing {
namespace phi_blocks_detail {

// The names README's table gives, for the cases' layouts: testing::*Case::make(20)
// (one block "x" of 20, or APO-P's W 2×9 and b of 2; LODO with 4 layers).
inline std::vector<std::string> documented_names(std::string_view name) {
    if (name == "SCALTRA")
        return {"b:x", "rho:x"};
    if (name == "LODO")
        return {"W1", "W2", "W3", "W4"};
    if (name == "APO")
        return {"log_lr"};
    if (name == "APO-P")
        return {"A:W", "B:W", "S:W", "log_lr:b"};
    if (name == "DCOG")
        return {"log_lambda"};
    if (name == "DCOM")
        return {"log_lambda", "M"};
    return {"B"};  // DCOGD
}

}  // namespace phi_blocks_detail

/// The check for one learned case of optimizer_cases.hpp.
template <class TestType>
void phi_blocks_tile_and_are_live() {
    using S = typename TestType::Opt::Scalar;
    constexpr Index n = 20;
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 3);
    auto opt = TestType::make(n);
    Vec<S> x = quadratic.initial_point();
    opt.step(x, quadratic);
    opt.step(x, quadratic);

    const scaltra::Layout& blocks = opt.meta_layout();
    std::vector<std::string> names;
    Index end = 0;
    for (const auto& b : blocks.blocks()) {
        names.push_back(b.name);
        CHECK(b.offset == end);
        end += b.size();
    }
    CHECK(names == phi_blocks_detail::documented_names(opt.name()));
    CHECK(end == opt.state().phi.size());

    std::stringstream saved;
    opt.save(saved);
    auto copy = [&] {  // APO-P's workspaces are not copyable: a copy through save/load
        auto twin = TestType::make(n);
        std::stringstream in(saved.str());
        twin.load(in);
        return twin;
    };
    for (const auto& b : blocks.blocks()) {
        INFO(b.name);
        auto moved = copy();
        auto state = moved.state();
        using Stored = typename decltype(state.phi)::Scalar;  // S, or CompactLodo's bfloat16
        scaltra::block_view(state.phi, b).array() += Stored(0.25);
        moved.set_state(std::move(state));
        auto unchanged = copy();
        Vec<S> x_moved = x, x_unchanged = x;
        moved.step(x_moved, quadratic);
        unchanged.step(x_unchanged, quadratic);
        CHECK(x_moved != x_unchanged);
    }
}

}  // namespace testing
