"""Training runs: a command is a list of phases (pretrain, search, retrain) run by one trainer, which keeps the
loop, checkpoints, resume and logs; task balancing and gradient-conflict measurement."""
