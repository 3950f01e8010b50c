"""One exception type for every refusal the study makes.

A StudyError carries one line that says what is wrong and where; the command line
prints it and exits 2, notebooks let it surface as the cell's error.
"""


class StudyError(Exception):
    """Bad input (params, data, checkpoint) described in one line."""


class ParamsError(StudyError):
    """A params file that fails validation."""


class DataError(StudyError):
    """MNIST files missing, corrupt, or impossible to fetch."""


class CheckpointError(StudyError):
    """A checkpoint that is missing, truncated, foreign or unsafe."""


class TrainingError(StudyError):
    """Training that cannot go on (for example a non-finite loss)."""
