#!/bin/sh
# The sweep behind APO's defaults (README, "APO"): Fashion-MNIST with the example,
# 10 epochs, seed 1, 10,000 training images held out and scored on them (never on
# the test set). Prints one markdown table per stage, validation accuracy in %.
#
#   sh examples/apo_sweep.sh apo|apo-adam|apo-p [build/release/examples/fashion_mnist]
#
# Stage 1: λ_FSD against λ_WSD, at K and META_LR from the environment when given
# (else the library's defaults).
# Stage 2: the interval K against the meta learning rate, at stage 1's best λs,
# taken from the environment as FSD and WSD when given (else the defaults).
# The grids are INTERVALS, META_LRS, FSDS and WSDS when given; STAGES (default
# "1 2") picks the stages to run, and EXTRA holds further flags for every run
# (e.g. EXTRA="--max-factor 256").
set -eu
optimizer=${1:?usage: sh examples/apo_sweep.sh apo|apo-adam|apo-p [fashion_mnist]}
binary=${2:-build/release/examples/fashion_mnist}
epochs=${EPOCHS:-10}
case "$optimizer" in
    apo-p) meta_lrs=${META_LRS:-"1e-4 3e-4 1e-3 3e-3"} ;;
    *) meta_lrs=${META_LRS:-"0.01 0.03 0.1 0.3"} ;;
esac
intervals=${INTERVALS:-"1 5 10 20"}
fsds=${FSDS:-"0 0.3 1 3 10"}
wsds=${WSDS:-"0 1 10 30 100"}

# The validation accuracy of one run (the table's "val acc" column).
score() {
    # shellcheck disable=SC2086
    "$binary" --optimizer "$optimizer" --epochs "$epochs" --validation 10000 --seed 1 ${EXTRA:-} "$@" \
        2>/dev/null | awk -v name="$optimizer" '$1 == name { print $8 }' | tr -d '%'
}

row() {  # row LABEL VALUES...: a markdown table row
    printf '| %s |' "$1"
    shift
    for v in "$@"; do printf ' %s |' "$v"; done
    printf '\n'
}

header() {  # header CORNER COLUMNS...
    row "$@"
    printf '| ---'
    shift
    for _ in "$@"; do printf ' | ---'; done
    printf ' |\n'
}

# grid TITLE CORNER ROW_FLAG ROWS COL_FLAG COLS [FLAGS...]: one stage's table, a
# row per value of ROW_FLAG and a column per value of COL_FLAG.
grid() {
    title=$1 corner=$2 row_flag=$3 rows=$4 col_flag=$5 cols=$6
    shift 6
    echo "$title"
    # shellcheck disable=SC2086
    header "$corner" $cols
    for r in $rows; do
        cells=""
        for c in $cols; do
            cells="$cells $(score "$@" "$row_flag" "$r" "$col_flag" "$c")"
        done
        # shellcheck disable=SC2086
        row "$r" $cells
    done
    echo
}

stages=${STAGES:-"1 2"}

set --
[ -n "${K:-}" ] && set -- "$@" --interval "$K"
[ -n "${META_LR:-}" ] && set -- "$@" --meta-lr "$META_LR"
case " $stages " in *" 1 "*)
    grid "Stage 1: λ_FSD \\ λ_WSD ($optimizer, $epochs epochs, K ${K:-default}, meta-lr ${META_LR:-default})" \
        "λ_FSD \\ λ_WSD" --lambda-fsd "$fsds" --lambda-wsd "$wsds" "$@" ;;
esac

set --
[ -n "${FSD:-}" ] && set -- "$@" --lambda-fsd "$FSD"
[ -n "${WSD:-}" ] && set -- "$@" --lambda-wsd "$WSD"
case " $stages " in *" 2 "*)
    grid "Stage 2: K \\ meta-lr ($optimizer, $epochs epochs, λ_FSD ${FSD:-default}, λ_WSD ${WSD:-default})" \
        "K \\ meta-lr" --interval "$intervals" --meta-lr "$meta_lrs" "$@" ;;
esac
