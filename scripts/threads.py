"""Where a second torch thread starts to pay: the journal's step (nn.Linear, MSELoss, SGD) on batches
of growing size, median seconds per epoch with 1 and 2 threads. Run: python scripts/threads.py
The crossover it shows is gradlab.run.threads.CROSSOVER, which `threads=auto` uses.
"""

import sys

from gradlab.run.threads import crossover_table

SIZES = [(100, 1), (1000, 10), (10_000, 10), (20_000, 10), (50_000, 10), (100_000, 10), (100_000, 100),
         (1_000_000, 10)]

if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    print(f"{'rows x features':>18}  {'numbers':>10}  {'1 thread':>10}  {'2 threads':>10}  1/2")
    for row in crossover_table(SIZES, repeats):
        print(f"{row['rows']:>10,} x {row['features']:<5}  {row['numbers']:>10,}  {row['1 thread us']:>8.0f}us"
              f"  {row['2 threads us']:>8.0f}us  {row['ratio']:.2f}x", flush=True)
