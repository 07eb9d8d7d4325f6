"""`python -m worker`: the long-running SQS consumer (same as the `gpuqueue-worker` script)."""

from worker.cli import console

if __name__ == "__main__":
    console()
