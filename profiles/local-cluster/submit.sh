#!/usr/bin/env bash
# Submit a Snakemake job script: run it detached, in a clean environment (PATH and HOME only), and print
# its id, as sbatch would. Its output goes beside the script.
script="${!#}"
nohup env -i PATH="$PATH" HOME="$HOME" bash "$script" >"$script.out" 2>&1 </dev/null &
echo $!
