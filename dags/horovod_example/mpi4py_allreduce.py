"""An mpi4py program under the MPI backend: every rank contributes its rank; rank 0 checks the sum."""

import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1, op=MPI.SUM)
expected = comm.Get_size() * (comm.Get_size() + 1) // 2
print(f"mpi4py rank {comm.Get_rank()} of {comm.Get_size()}: allreduce sum {total} (expected {expected})")
sys.exit(0 if total == expected else 1)
