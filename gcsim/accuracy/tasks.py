"""In-context tasks generated on the fly with controlled difficulty: multi-query associative recall
(MQAR) and induction heads. NumPy only; every batch is a pure function of its generator's seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Target value of a position that is not scored (torch's cross-entropy ignores it).
IGNORE = -100


@dataclass(frozen=True)
class Batch:
    """tokens (n, T) int64 inputs; targets (n, T) int64, IGNORE where not scored."""

    tokens: np.ndarray
    targets: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        return self.targets != IGNORE


@dataclass(frozen=True)
class MQAR:
    """Multi-query associative recall (Arora et al., Zoology, 2023).

    A sequence opens with `pairs` key-value pairs (k1 v1 k2 v2 ...; keys distinct), then
    `queries` of those keys (each at most once) at random later positions among blanks. At a
    query the model must name the value paired with that key. Token 0 is the blank; keys are
    1...n_keys, values the rest of the vocabulary. Chance is 1 / n_values.
    """

    vocab: int = 64
    pairs: int = 8
    seq_len: int = 64
    queries: int | None = None  # None: every key is queried once

    name = "mqar"

    @property
    def n_keys(self) -> int:
        return (self.vocab - 1) // 2

    @property
    def n_values(self) -> int:
        return self.vocab - 1 - self.n_keys

    @property
    def n_queries(self) -> int:
        return self.pairs if self.queries is None else self.queries

    @property
    def chance(self) -> float:
        return 1.0 / self.n_values

    def check(self) -> MQAR:
        if self.vocab < 5:
            raise ValueError(f"mqar: vocabulary must be >= 5 tokens, got {self.vocab}")
        if not 1 <= self.pairs <= self.n_keys:
            raise ValueError(f"mqar: pairs must be 1...{self.n_keys} (the keys of a "
                             f"{self.vocab}-token vocabulary), got {self.pairs}")
        if not 1 <= self.n_queries <= self.pairs:
            raise ValueError(f"mqar: queries must be 1...{self.pairs} (the pairs), got "
                             f"{self.n_queries}")
        if self.seq_len < 2 * self.pairs + self.n_queries:
            raise ValueError(f"mqar: sequence length {self.seq_len} cannot hold {self.pairs} pairs "
                             f"and {self.n_queries} queries (needs >= "
                             f"{2 * self.pairs + self.n_queries})")
        return self

    def describe(self) -> dict:
        return {"name": self.name, **asdict(self), "queries": self.n_queries,
                "chance": self.chance}

    def generate(self, n: int, rng: np.random.Generator) -> Batch:
        self.check()
        T, P, Q = self.seq_len, self.pairs, self.n_queries
        rows = np.arange(n)[:, None]
        # Distinct keys per sequence: the first P of a random permutation of the key ids.
        keys = np.argsort(rng.random((n, self.n_keys)), axis=1)[:, :P] + 1
        values = rng.integers(0, self.n_values, size=(n, P)) + 1 + self.n_keys
        tokens = np.zeros((n, T), dtype=np.int64)
        targets = np.full((n, T), IGNORE, dtype=np.int64)
        tokens[:, 0:2 * P:2] = keys
        tokens[:, 1:2 * P:2] = values
        # Which pairs are queried, and where: distinct positions after the pairs.
        asked = np.argsort(rng.random((n, P)), axis=1)[:, :Q]
        free = T - 2 * P
        where = np.argsort(rng.random((n, free)), axis=1)[:, :Q] + 2 * P
        tokens[rows, where] = keys[rows, asked]
        targets[rows, where] = values[rows, asked]
        return Batch(tokens, targets)


@dataclass(frozen=True)
class Induction:
    """Induction heads: a random sequence in which a trigger token occurs once, followed by a
    target; the last token is the trigger again, and the model must name that target.
    Token 0 is the trigger, the other tokens are content. Chance is 1 / (vocab - 1)."""

    vocab: int = 32
    seq_len: int = 64

    name = "induction"

    @property
    def chance(self) -> float:
        return 1.0 / (self.vocab - 1)

    def check(self) -> Induction:
        if self.vocab < 3:
            raise ValueError(f"induction: vocabulary must be >= 3 tokens, got {self.vocab}")
        if self.seq_len < 4:
            raise ValueError(f"induction: sequence length must be >= 4, got {self.seq_len}")
        return self

    def describe(self) -> dict:
        return {"name": self.name, **asdict(self), "chance": self.chance}

    def generate(self, n: int, rng: np.random.Generator) -> Batch:
        self.check()
        T = self.seq_len
        rows = np.arange(n)
        tokens = rng.integers(1, self.vocab, size=(n, T)).astype(np.int64)
        # The first trigger sits anywhere that leaves its target before the final trigger.
        first = rng.integers(0, T - 2, size=n)
        tokens[rows, first] = 0
        tokens[:, T - 1] = 0
        targets = np.full((n, T), IGNORE, dtype=np.int64)
        targets[:, T - 1] = tokens[rows, first + 1]
        return Batch(tokens, targets)


TASKS = {"mqar": MQAR, "induction": Induction}


def make_task(name: str, **options):
    """A task by name with its difficulty options (None values take the task's defaults)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    cls = TASKS[name]
    fields = cls.__dataclass_fields__
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValueError(f"{name}: no option {', '.join(unknown)} (it takes "
                         f"{', '.join(fields)})")
    return cls(**given).check()
