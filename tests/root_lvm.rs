//! Tier 2 (root): an LVM2 physical volume imaged by the used blocks of its logical volumes'
//! filesystems. The disk (tests/common/lvm.rs) is made by lvm2's own tools, with an ext4 LV in
//! two out-of-order segments, an XFS LV, and junk in free extents. After a restore, lvm2 reads
//! the same volume group from the copy, every LV reassembled from its extents passes its
//! checker and holds the same files, and the junk is not copied.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::p;
use common::{lifeboat_stdout, lvm, plan_region, sparse};

#[test]
fn an_lvm_pv_is_imaged_by_its_logical_volumes_used_blocks() {
    if !lvm::prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let vg = format!("lbvg{}", std::process::id());
    let (disk, want) = lvm::build(t, &vg);
    let r = plan_region(&disk, &[], |r| r["fs"] == "LVM2_member");
    assert_eq!(r["method"], "used-blocks", "{r}");
    let (copy, size) = (
        r["copy_bytes"].as_u64().unwrap(),
        r["size_bytes"].as_u64().unwrap(),
    );
    assert!(copy < size / 4, "{copy} of {size} bytes to copy: {r}");
    let img = t.join("lvm.lbi");
    lifeboat_stdout(&["image", p(&disk), "-o", p(&img)]);
    let target = t.join("target.img");
    sparse(&target, lvm::DISK);
    lifeboat_stdout(&["restore", p(&img), p(&target), "--yes"]);
    lvm::check_copy(&target, t, &vg, &want);
}
