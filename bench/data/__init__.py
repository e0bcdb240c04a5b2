"""The data a run trains and validates on: one LightningDataModule for every data set.

Two code paths, chosen by the data set (:mod:`~bench.data.datasets`): in memory (``fashion_mnist``,
``digits``, ``cifar10``, ``cifar100``), batches cut from one uint8 tensor and augmented as a whole batch
(:mod:`~bench.data.loaders`); files (``imagenet``, ``synthetic`` from :mod:`~bench.data.synthetic`), torchvision
``ImageFolder`` with PIL transforms in DataLoader workers. Which images a process sees in an epoch:
:mod:`~bench.data.sampling`. The module that puts them together: :mod:`~bench.data.module`.
"""
