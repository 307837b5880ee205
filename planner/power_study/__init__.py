"""The power study (application layer): build a row, plan its power oversubscription with the solvers in
:mod:`solvers.power`, verify every plan by replaying the row with POLCA in the simulator loop."""
