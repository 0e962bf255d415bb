"""Train a task: `python train.py task=classification backbone=lenet5 data=digits trainer=cpu`."""

from cvtasks.cli.train import main

if __name__ == "__main__":
    main()
