// The IDX reader's and the checkpoint loader's fuzz corpora, replayed (replay.hpp).
// The optimizer loaders' corpus is replayed per optimizer in each family's own test
// file (cross_optimizer_suites.hpp), where those optimizers are compiled anyway.
#include "fuzz_target.hpp"
#include "replay.hpp"

TEST_CASE("the IDX reader's fuzz corpus replays without a finding", "[fuzz]") {
    CHECK(fuzzing::replay("idx", fuzzing::fuzz_idx) > 0);
}

TEST_CASE("the checkpoint loader's fuzz corpus replays without a finding", "[fuzz]") {
    CHECK(fuzzing::replay("checkpoint", fuzzing::fuzz_checkpoint) > 0);
}
