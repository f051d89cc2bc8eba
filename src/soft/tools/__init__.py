"""Tools around the workflow, not stages of it: the cost forecast (`make forecast`) and the
rehearsal of the paper config's code paths (`make rehearse`)."""
