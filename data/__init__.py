"""The data stage: synthetic rain on clean frames (streaks, street rain, a second renderer as judge) and paired folders."""
