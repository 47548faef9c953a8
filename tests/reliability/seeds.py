"""Valid annotation files of every format (the seeds the fuzz tests mutate) and their builders."""

from __future__ import annotations

import io
import pickle

import numpy as np

MANIFEST_SEED = ("video,split,label,class,frames,fps,width,height\n"
                 "videos/a.mp4,train,0,normal,40,25,96,64\n"
                 "videos/b.mp4,test,1,square,40,25.0,96,64\n"
                 "videos/sub/c.mp4,test,0,,,,,\n")
TRACKS_SEED = ("track_id,frame_id,x_min,y_min,x_max,y_max\n"
               "0,10,4,26,15,37\n0,11,6,26,17,37\n1,11,40,0,95,63\n")

UCF_LIST_SEED = "Abuse/Abuse028_x264.mp4\nTesting_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4\n"
UCF_TEMPORAL_SEED = ("Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
                     "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
                     "Arson011_x264.mp4  Arson  150  420  680  1267\n")

UCF_PICKLE_SEED = pickle.dumps({"Abuse028_x264": [["Abuse028_x264/image_0170.jpg", 10, 20, 60, 90],
                                                  ["Abuse028_x264/image_0186.jpg", 12, 20, 62, 90]]}, protocol=0)

XD_ANN_SEED = ("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 0 127 356 484\n"
               "Black.Hawk.Down.2001__#01-36-20_01-36-55_label_B2-0-0.mp4 16 80\n")
XD_LIST_SEED = ("/x/i3d/RGBTest/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6__0.npy\n"
                "/x/i3d/RGBTest/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6__1.npy\n")

SH_IDS_SEED = "01_0014\n01_001\n12_0173\n"
SH_AED_SEED = "0,10,100,120,140,200\n0,11,102,120,142,200\n1,300,5,5,855,479\n"

UB_TRACKS_SEED = "1,10,40\n2,0,5\n3.0,7,7\n"

def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


UB_MAP_SEED = png(np.pad(np.full((4, 5), 3, np.uint8), 6))   # object 3 in a 17x16 map
UB_MAP_SIZE = (17, 16)


def png_header_claiming(width: int, height: int) -> bytes:
    """The seed PNG with its header rewritten to claim a huge size (valid CRC)."""
    import struct
    import zlib

    data = bytearray(UB_MAP_SEED)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)

UCSD_M_SEED = ("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [61:180];\n"
               "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\nTestVideoFile{end+1}.gt_frame = [1:146];\n")

def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


UCSD_NPZ_SEED = npz({"Test001": np.packbits(np.eye(8, 16, dtype=bool)[None].repeat(3, 0), axis=2)})

def bmp(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="BMP")
    return buf.getvalue()

STREET_SEED = "Test001/002.jpg 0 10 8 6 4\nTest001/003.jpg 0 11.5 8 6 4\nTest001/006.jpg 1 38 20 8 10\n"

def mat(obj: dict) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, obj)
    return buf.getvalue()


def cell(masks: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((1, len(masks)), dtype=object)
    for k, m in enumerate(masks):
        cell[0, k] = m
    return cell


AVENUE_SEED = mat({"volLabel": cell([np.eye(6, 8), np.zeros((6, 8))])})
