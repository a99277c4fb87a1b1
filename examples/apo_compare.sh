#!/bin/sh
# APO's 10-epoch comparison (README, "APO"): Fashion-MNIST test accuracy over
# seeds 1-3 of SGD momentum at each fixed learning rate of {0.01, 0.03, 0.1, 0.3},
# Adam at 1e-3, and apo, apo-adam and apo-p with their defaults, on the full
# training set. Prints a markdown table: test accuracy in % per seed, and the mean.
#
#   sh examples/apo_compare.sh [build/release/examples/fashion_mnist]
#
# SEEDS and EPOCHS override the seeds (default "1 2 3") and the epochs (10).
set -eu
binary=${1:-build/release/examples/fashion_mnist}
seeds=${SEEDS:-"1 2 3"}
epochs=${EPOCHS:-10}

# Prints "label<TAB>seed<TAB>accuracy" for every row of one run's table.
runs() {
    seed=$1
    shift
    "$binary" --epochs "$epochs" --seed "$seed" "$@" 2>/dev/null |
        awk -v seed="$seed" -v OFS='\t' 'NR > 1 && $9 ~ /%$/ {
            sub(/%/, "", $9)
            print $1, seed, $9 }'
}

for seed in $seeds; do
    for lr in 0.01 0.03 0.1 0.3; do
        runs "$seed" --optimizer momentum --lr "$lr" | sed "s/^momentum/momentum, lr $lr/"
    done
    runs "$seed" --optimizer adam,apo,apo-adam,apo-p
done | awk -F '\t' -v seeds="$seeds" '
    !($1 in sum) { rows[++m] = $1 }
    { acc[$1, $2] = $3; sum[$1] += $3; count[$1]++ }
    END {
        k = split(seeds, s, " ")
        printf "| optimizer |"; for (i = 1; i <= k; ++i) printf " seed %s |", s[i]; print " mean |"
        printf "| ---"; for (i = 0; i <= k; ++i) printf " | ---"; print " |"
        for (r = 1; r <= m; ++r) {
            printf "| %s |", rows[r]
            for (i = 1; i <= k; ++i) printf " %s |", acc[rows[r], s[i]]
            printf " %.2f |\n", sum[rows[r]] / count[rows[r]]
        }
    }'
