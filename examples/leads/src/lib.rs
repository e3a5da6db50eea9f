//! The sales leads of the seeds (Learning Domain-Driven Design, ch. 7).
