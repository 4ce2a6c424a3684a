//! The packed due index of one partition, without Python types.
