//! Disks and partitions from sysfs. PLACEHOLDER: being written.
