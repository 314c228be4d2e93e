#!/usr/bin/env bash
# Fetch the public datasets and unpack them into the layout the loaders read (see data/README.md).
#
#   data/download_data.sh [DATA_ROOT] [DATASET ...]
#
# DATA_ROOT defaults to ./data; DATASETs (default: all) are
#   modelnet40 shapenetpart s3dis scanobjectnn shapenetrender
#
# Datasets behind a manual step (ScanObjectNN's terms-of-use form, the ShapeNetRender point clouds on
# Google Drive) are unpacked when you have put their archive in DATA_ROOT (or, for ScanObjectNN, given the
# link you were sent in SCANOBJECTNN_URL); otherwise the script prints what to do and counts them as not
# done. Every dataset is verified after unpacking (file names, h5 sample counts, checksums where known).
# Exit status: 0 when every requested dataset is present and verified, 1 otherwise (one line per failure).
set -u

ROOT=${1:-data}
[ $# -gt 0 ] && shift
DATASETS=("$@")
[ ${#DATASETS[@]} -eq 0 ] && DATASETS=(modelnet40 shapenetpart s3dis scanobjectnn shapenetrender)

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3 || true)

FAILURES=()
fail() { FAILURES+=("$1"); }
say() { echo "[download_data] $*"; }

mkdir -p "$ROOT" || { echo "error: cannot create $ROOT" >&2; exit 1; }
ROOT=$(cd "$ROOT" && pwd)

# fetch URL OUT: download to OUT (via OUT.part, so an interrupted download is never taken for a file)
fetch() {
    local url=$1 out=$2
    say "fetching $url"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 2 --connect-timeout 20 -o "$out.part" "$url" || { rm -f "$out.part"; return 1; }
    elif command -v wget >/dev/null; then
        wget -q -O "$out.part" "$url" || { rm -f "$out.part"; return 1; }
    else
        say "neither curl nor wget is installed"; return 1
    fi
    mv "$out.part" "$out"
}

# fetch_any OUT URL...: the first URL that works
fetch_any() {
    local out=$1; shift
    [ -s "$out" ] && { say "using $out already here"; return 0; }
    local url
    for url in "$@"; do fetch "$url" "$out" && return 0; done
    return 1
}

unzip_into() {  # unzip_into ZIP DIR
    command -v unzip >/dev/null || { say "unzip is not installed"; return 1; }
    unzip -q -o "$1" -d "$2"
}

# verify NAME: checks the unpacked layout with h5py; prints what it found, returns non-zero on a mismatch
verify() {
    if [ -z "$PYTHON" ] || ! "$PYTHON" -c "import h5py" 2>/dev/null; then
        say "$1: NOT verified (no python with h5py; set PYTHON=...)"; return 1
    fi
    "$PYTHON" - "$ROOT" "$1" <<'EOF'
import glob, hashlib, os, sys
import h5py

root, name = sys.argv[1], sys.argv[2]
problems = []

def rows(pattern, key="data"):
    files = sorted(glob.glob(os.path.join(root, pattern)))
    if not files:
        problems.append(f"no files {pattern}")
    total = 0
    for path in files:
        with h5py.File(path, "r") as f:
            total += len(f[key])
    return total

def expect(what, got, wanted):
    if got != wanted:
        problems.append(f"{what}: {got}, expected {wanted}")

def exists(*paths):
    for path in paths:
        if not os.path.exists(os.path.join(root, path)):
            problems.append(f"missing {path}")

if name == "modelnet40":
    d = "modelnet40_ply_hdf5_2048"
    exists(f"{d}/shape_names.txt", f"{d}/train_files.txt", f"{d}/test_files.txt")
    expect("ModelNet40 train shapes", rows(f"{d}/ply_data_train*.h5"), 9840)
    expect("ModelNet40 test shapes", rows(f"{d}/ply_data_test*.h5"), 2468)
elif name == "shapenetpart":
    d = "shapenet_part_seg_hdf5_data"
    # md5 of the h5 files as published by public loaders that check them
    md5 = {"ply_data_train0.h5": "e7152ff588ae6c87eb1156823df05855", "ply_data_train1.h5": "b4894a082211418b61b5a707fedb4f56",
           "ply_data_train2.h5": "508eeeee96053b90388520c37df3a8b8", "ply_data_train3.h5": "88574c3d5c61d0f3156b9e02cd6cda03",
           "ply_data_train4.h5": "418cb01104740bf1353b792331cb5878", "ply_data_train5.h5": "26e65c8827b08f7c340cd03f902e27e8",
           "ply_data_val0.h5": "628b4b3cbc17765de2114d104e51b9c9", "ply_data_test0.h5": "fa3fb32b179128ede32c2c948ed83efc",
           "ply_data_test1.h5": "5eb63ae378831c665282c8f22b6c1249"}
    for file, digest in md5.items():
        path = os.path.join(root, d, file)
        if not os.path.exists(path):
            problems.append(f"missing {d}/{file}")
        elif hashlib.md5(open(path, "rb").read()).hexdigest() != digest:
            problems.append(f"{d}/{file}: md5 differs from the published one")
    expect("ShapeNetPart train+val shapes", rows(f"{d}/ply_data_train*.h5") + rows(f"{d}/ply_data_val*.h5"), 14007)
    expect("ShapeNetPart test shapes", rows(f"{d}/ply_data_test*.h5"), 2874)
elif name == "s3dis":
    d = "indoor3d_sem_seg_hdf5_data"
    exists(f"{d}/all_files.txt", f"{d}/room_filelist.txt")
    blocks = rows(f"{d}/ply_data_all_*.h5")
    expect("S3DIS blocks", blocks, 23585)
    if os.path.exists(os.path.join(root, d, "room_filelist.txt")):
        expect("room_filelist.txt lines", len(open(os.path.join(root, d, "room_filelist.txt")).read().split()), blocks)
elif name == "scanobjectnn":
    d = "h5_files"
    expect("OBJ_BG train", rows(f"{d}/main_split/training_objectdataset.h5"), 2309)
    expect("OBJ_BG test", rows(f"{d}/main_split/test_objectdataset.h5"), 581)
    expect("OBJ_ONLY train", rows(f"{d}/main_split_nobg/training_objectdataset.h5"), 2309)
    expect("PB_T50_RS train", rows(f"{d}/main_split/training_objectdataset_augmentedrot_scale75.h5"), 11416)
    expect("PB_T50_RS test", rows(f"{d}/main_split/test_objectdataset_augmentedrot_scale75.h5"), 2882)
    exists("ScanObjectNN/main_split/train.h5", "ScanObjectNN/main_split/test.h5")
elif name == "shapenetrender":
    plys = glob.glob(os.path.join(root, "ShapeNet", "*", "*.ply"))
    synsets = {os.path.basename(os.path.dirname(p)) for p in plys}
    expect("ShapeNet synsets with .ply files", len(synsets), 13)
    rendered = sum(os.path.isfile(os.path.join(root, "ShapeNetRendering", os.path.basename(os.path.dirname(p)),
                                               os.path.basename(p)[:-4], "rendering", "00.png")) for p in plys)
    print(f"[download_data] ShapeNetRender: {len(plys)} point clouds (43,783 expected), {rendered} with renderings")
    if len(plys) < 40000:
        problems.append(f"only {len(plys)} ShapeNet/*/*.ply files")
for problem in problems:
    print(f"[download_data] {name}: {problem}")
sys.exit(1 if problems else 0)
EOF
}

get_modelnet40() {
    verify modelnet40 >/dev/null 2>&1 && { say "modelnet40: already present and verified"; return 0; }
    local zip=$ROOT/modelnet40_ply_hdf5_2048.zip
    fetch_any "$zip" \
        "https://huggingface.co/datasets/Msun/modelnet40/resolve/main/modelnet40_ply_hdf5_2048.zip" \
        "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip" \
        || { fail "modelnet40: download failed from every source (offline, or the servers are down)"; return 1; }
    unzip_into "$zip" "$ROOT" || { fail "modelnet40: could not unzip $zip"; return 1; }
    verify modelnet40 || { fail "modelnet40: unpacked files do not match the expected layout (see above; delete $zip to download again)"; return 1; }
    rm -f "$zip"
    say "modelnet40: ok"
}

get_shapenetpart() {
    verify shapenetpart >/dev/null 2>&1 && { say "shapenetpart: already present and verified"; return 0; }
    local zip=$ROOT/shapenet_part_seg_hdf5_data.zip
    fetch_any "$zip" "https://shapenet.cs.stanford.edu/media/shapenet_part_seg_hdf5_data.zip" \
        || { fail "shapenetpart: download failed (offline, or shapenet.cs.stanford.edu is down; put shapenet_part_seg_hdf5_data.zip in $ROOT and rerun)"; return 1; }
    local tmp; tmp=$(mktemp -d "$ROOT/.unzip.XXXXXX")
    unzip_into "$zip" "$tmp" || { rm -rf "$tmp"; fail "shapenetpart: could not unzip $zip"; return 1; }
    # the archive unpacks to hdf5_data/; the loaders (like DGCNN's) expect shapenet_part_seg_hdf5_data/
    local inner; inner=$(dirname "$(find "$tmp" -name ply_data_val0.h5 | head -1)")
    rm -rf "$ROOT/shapenet_part_seg_hdf5_data" && mv "$inner" "$ROOT/shapenet_part_seg_hdf5_data"
    rm -rf "$tmp"
    verify shapenetpart || { fail "shapenetpart: unpacked files do not match the expected layout (see above; delete $zip to download again)"; return 1; }
    rm -f "$zip"
    say "shapenetpart: ok"
}

get_s3dis() {
    verify s3dis >/dev/null 2>&1 && { say "s3dis: already present and verified"; return 0; }
    local zip=$ROOT/indoor3d_sem_seg_hdf5_data.zip
    fetch_any "$zip" "https://shapenet.cs.stanford.edu/media/indoor3d_sem_seg_hdf5_data.zip" \
        || { fail "s3dis: download failed (offline, or shapenet.cs.stanford.edu is down; put indoor3d_sem_seg_hdf5_data.zip in $ROOT and rerun)"; return 1; }
    unzip_into "$zip" "$ROOT" || { fail "s3dis: could not unzip $zip"; return 1; }
    verify s3dis || { fail "s3dis: unpacked files do not match the expected layout (see above; delete $zip to download again)"; return 1; }
    rm -f "$zip"
    say "s3dis: ok"
}

get_scanobjectnn() {
    verify scanobjectnn >/dev/null 2>&1 && { say "scanobjectnn: already present and verified"; return 0; }
    local zip=$ROOT/h5_files.zip
    if [ ! -s "$zip" ] && [ -n "${SCANOBJECTNN_URL:-}" ]; then
        fetch "$SCANOBJECTNN_URL" "$zip" || { fail "scanobjectnn: download from \$SCANOBJECTNN_URL failed"; return 1; }
    fi
    if [ ! -s "$zip" ]; then
        say "ScanObjectNN needs a manual step: fill in the terms-of-use form at https://hkust-vgd.github.io/scanobjectnn/"
        say "  the authors email a link to h5_files.zip; then either save it as $zip"
        say "  or run: SCANOBJECTNN_URL='<that link>' $0 $ROOT scanobjectnn"
        fail "scanobjectnn: not downloaded (manual step pending, see above)"
        return 1
    fi
    local tmp; tmp=$(mktemp -d "$ROOT/.unzip.XXXXXX")
    unzip_into "$zip" "$tmp" || { rm -rf "$tmp"; fail "scanobjectnn: could not unzip $zip"; return 1; }
    local inner; inner=$(dirname "$(find "$tmp" -type d -name main_split | grep -v __MACOSX | head -1)")
    rm -rf "$ROOT/h5_files" && mv "$inner" "$ROOT/h5_files"
    rm -rf "$tmp"
    # CrossPoint's names for OBJ_BG: ScanObjectNN/main_split/{train,test}.h5 (the same files)
    mkdir -p "$ROOT/ScanObjectNN/main_split"
    ln -sf ../../h5_files/main_split/training_objectdataset.h5 "$ROOT/ScanObjectNN/main_split/train.h5"
    ln -sf ../../h5_files/main_split/test_objectdataset.h5 "$ROOT/ScanObjectNN/main_split/test.h5"
    verify scanobjectnn || { fail "scanobjectnn: unpacked files do not match the expected layout (see above; delete $zip to download again)"; return 1; }
    rm -f "$zip"
    say "scanobjectnn: ok"
}

get_shapenetrender() {
    verify shapenetrender >/dev/null 2>&1 && { say "shapenetrender: already present and verified"; return 0; }
    local ok=0
    # the renderings are 3D-R2N2's (Choy et al. 2016), public; CrossPoint's shapenet_render.tar.gz is the same
    if [ ! -d "$ROOT/ShapeNetRendering" ]; then
        if [ -s "$ROOT/shapenet_render.tar.gz" ]; then
            tar -xzf "$ROOT/shapenet_render.tar.gz" -C "$ROOT" || { fail "shapenetrender: could not untar shapenet_render.tar.gz"; ok=1; }
        elif fetch_any "$ROOT/ShapeNetRendering.tgz" "http://cvgl.stanford.edu/data2/ShapeNetRendering.tgz"; then
            tar -xzf "$ROOT/ShapeNetRendering.tgz" -C "$ROOT" && rm -f "$ROOT/ShapeNetRendering.tgz" \
                || { fail "shapenetrender: could not untar ShapeNetRendering.tgz"; ok=1; }
        else
            fail "shapenetrender: download of the renderings (ShapeNetRendering.tgz) failed (offline?)"; ok=1
        fi
    fi
    # the point clouds ShapeNet/<synset>/<id>.ply exist only in CrossPoint's Google Drive folder
    if [ ! -d "$ROOT/ShapeNet" ]; then
        if [ -s "$ROOT/shapenet.tar.gz" ]; then
            tar -xzf "$ROOT/shapenet.tar.gz" -C "$ROOT" || { fail "shapenetrender: could not untar shapenet.tar.gz"; ok=1; }
        else
            say "ShapeNetRender point clouds need a manual step: open CrossPoint's data folder"
            say "  https://drive.google.com/drive/folders/1dAH9R3XDV0z69Bz6lBaftmJJyuckbPmR"
            say "  download shapenet.tar.gz (the ShapeNet/<synset>/<id>.ply point clouds) into $ROOT"
            say "  (with the gdown tool: pip install gdown, then gdown --folder <that link>), and rerun: $0 $ROOT shapenetrender"
            fail "shapenetrender: point clouds not downloaded (manual step pending, see above)"
            return 1
        fi
    fi
    [ $ok -eq 0 ] || return 1
    verify shapenetrender || { fail "shapenetrender: unpacked files do not match the expected layout (see above)"; return 1; }
    say "shapenetrender: ok"
}

for dataset in "${DATASETS[@]}"; do
    case $dataset in
        modelnet40|shapenetpart|s3dis|scanobjectnn|shapenetrender) "get_$dataset" ;;
        *) fail "unknown dataset '$dataset' (choose from modelnet40 shapenetpart s3dis scanobjectnn shapenetrender)" ;;
    esac
done

if [ ${#FAILURES[@]} -gt 0 ]; then
    for line in "${FAILURES[@]}"; do echo "FAILED: $line" >&2; done
    exit 1
fi
say "all requested datasets are present and verified in $ROOT"
