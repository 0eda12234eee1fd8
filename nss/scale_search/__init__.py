"""Neural Scale Search proper: the gates and their relaxations, the NSS objective (the gated composite, sparsity,
latency), the latency cost model, and the derivation of an architecture from the gates."""
