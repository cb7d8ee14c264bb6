"""Study configs several test files run (TOML text)."""

# A cell-by-cell search that grows 2 -> 3 cells of width 4 on the digits in seconds: 39
# two-cell candidates, then the third cells that keep the network within 5,000 parameters.
TINY_CELL_BY_CELL = """
seed = 2
[dataset]
name = "digits"
[space]
macro = "light"
num_cells = [2, 3]
widths = [4]
shared_cell = false
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 5000
[search]
sampler = "cellbycell"
"""
