"""Records torchsort's soft_sort outputs and gradients as fixed test vectors (run by hand
where torchsort is installed; test_soft_sort.py compares against them when it is not):

    python tests/record_torchsort_vectors.py  # writes tests/data/torchsort_vectors.json
"""

import json
from importlib.metadata import version
from pathlib import Path

import torch

INPUTS = {
    "random": [2.3, -1.2, 0.4, 5.6, -3.3, 1.1, 0.9],
    "tied": [1.0, 3.0, 1.0, 1.0, -2.0, 3.0, 8.0, 1.0],
    "constant": [0.7, 0.7, 0.7, 0.7, 0.7],
    "heavy_tail": [0.1, -0.4, 250.0, 0.3, -80.0, 1.2, 0.0, 31.0],
    "readme": [8.0, 0.0, 5.0, 3.0, 2.0, 1.0, 6.0, 7.0, 9.0],
}
STRENGTHS = [0.1, 1.0, 3.0]


def main() -> None:
    import torchsort  # here, not at the top: pytest imports this file (--doctest-modules) without it

    cases = []
    for name, values in INPUTS.items():
        x = torch.tensor([values], dtype=torch.float64)
        upstream = torch.linspace(-1.0, 2.0, x.shape[1], dtype=torch.float64)[None]
        for strength in STRENGTHS:
            for regularization in ("l2", "kl"):
                xr = x.clone().requires_grad_()
                out = torchsort.soft_sort(xr, regularization=regularization, regularization_strength=strength)
                out.backward(upstream)
                cases.append(
                    {
                        "name": name,
                        "x": values,
                        "strength": strength,
                        "regularization": regularization,
                        "upstream": upstream[0].tolist(),
                        "values": out[0].tolist(),
                        "grad": xr.grad[0].tolist(),
                    }
                )
    path = Path(__file__).parent / "data" / "torchsort_vectors.json"
    header = {"torchsort": version("torchsort"), "torch": torch.__version__, "dtype": "float64"}
    lines = ",\n  ".join(json.dumps(case) for case in cases)  # one case per line
    path.write_text(json.dumps(header)[:-1] + f', "cases": [\n  {lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
