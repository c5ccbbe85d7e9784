"""Strip outputs and execution counts from every notebook here (``make strip-notebooks``)."""

from pathlib import Path

import nbformat

for path in sorted(Path(__file__).parent.glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)
    print(f"stripped {path.name}")
