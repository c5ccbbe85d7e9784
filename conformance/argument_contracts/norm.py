"""(being written)"""

ROWS: list = []
