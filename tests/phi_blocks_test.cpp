// φ by block (README, "A state you build"): every learned optimizer names the
// blocks of its meta-parameters in meta_layout(), the names are the documented
// ones, the blocks tile φ, each is live (changing it through set_state changes
// the next step), and SCALTRA's "b:"/"rho:" blocks are the b and ρ its τ and ‖b‖
// are computed from.
#include <cmath>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "optimizer_cases.hpp"
#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Vec;

namespace {

// The names README's table gives, for the cases' layouts: testing::*Case::make(20)
// (one block "x" of 20, or APO-P's W 2×9 and b of 2; LODO with 4 layers).
std::vector<std::string> documented_names(std::string_view name) {
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

}  // namespace

TEMPLATE_TEST_CASE("learned optimizers name the blocks of phi, which tile it and are live",
                   "[optim][state]", testing::ScaltraCase<double>, testing::LodoCase<double>,
                   testing::ApoCase<double>, testing::ApoPCase<double>,
                   testing::DcogCase<double>, testing::DcomCase<double>,
                   testing::DcogdCase<double>) {
    constexpr Index n = 20;
    const scaltra::problems::IllConditionedQuadratic<double> quadratic(n, 100.0, 3);
    auto opt = TestType::make(n);
    Vec<double> x = quadratic.initial_point();
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
    CHECK(names == documented_names(opt.name()));
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
        scaltra::block_view(state.phi, b).array() += 0.25;
        moved.set_state(std::move(state));
        auto unchanged = copy();
        Vec<double> x_moved = x, x_unchanged = x;
        moved.step(x_moved, quadratic);
        unchanged.step(x_unchanged, quadratic);
        CHECK(x_moved != x_unchanged);
    }
}

TEST_CASE("SCALTRA's phi blocks b:<block> and rho:<block> are its b and rho", "[optim][state]") {
    const auto layout = scaltra::Layout().add("W", 3, 2).add("bias", 3);
    scaltra::Scaltra<double> opt(layout,
                                 {.alpha0 = 0.5, .curvature = scaltra::Curvature::per_matrix});
    auto state = opt.state();
    const Vec<double> b = Vec<double>::LinSpaced(3, -1.0, 2.0);
    scaltra::block_view(state.phi, opt.meta_layout().at("b:bias")) = b;
    scaltra::block_view(state.phi, opt.meta_layout().at("rho:bias"))(0) = 0.7;
    opt.set_state(std::move(state));
    CHECK(opt.b_norm(1) == Approx(b.norm()).epsilon(1e-15));
    CHECK(opt.tau(1) == Approx(std::log1p(std::exp(0.7)) + opt.options().tau_min).epsilon(1e-15));
    // Under per_matrix, a matrix block's factor is "B:W", of W's shape.
    CHECK(opt.meta_layout().at("B:W").rows == 3);
    CHECK(opt.meta_layout().at("B:W").cols == 2);
    // Per-block getters name the block index asked for, not φ's.
    CHECK_THROWS_WITH(opt.tau(2), Catch::Contains("Block index 2 out of range"));
    CHECK_THROWS_AS(opt.b_norm(5), scaltra::InvalidArgument);
    CHECK_THROWS_AS(opt.effective_step(2), scaltra::InvalidArgument);
    scaltra::ApoP<double> apop(layout, {});
    CHECK(apop.lr(1) == Approx(apop.options().lr));
    CHECK_THROWS_WITH(apop.lr(2), Catch::Contains("Block index 2 out of range"));
}
