"""Export stage: conversion of a trained model to GGUF and its verification."""
