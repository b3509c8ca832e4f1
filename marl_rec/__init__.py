"""marl_rec."""
